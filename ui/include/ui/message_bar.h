// A dismissable strip above content: information (the tiny-model banner), undo offers and errors, with one optional
// action button. GUI thread only.
#pragma once

#include <QFrame>

class QLabel;
class QPushButton;

namespace ui {

class MessageBar : public QFrame {
    Q_OBJECT
public:
    enum class Level { Info, Warning, Error };

    explicit MessageBar(QWidget* parent = nullptr);

    // Shows the bar; an empty actionText hides the action button. actionId is passed back by actionClicked.
    void showMessage(Level level, const QString& text, const QString& actionText = {}, const QString& actionId = {});
    QString text() const;
    QString actionId() const { return m_actionId; }

Q_SIGNALS:
    void actionClicked(const QString& actionId);
    void dismissed();

protected:
    void paintEvent(QPaintEvent* event) override;

private:
    Level m_level = Level::Info;
    QLabel* m_label;
    QPushButton* m_action;
    QPushButton* m_close;
    QString m_actionId;
};

}  // namespace ui
