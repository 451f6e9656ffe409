// The list of conversations: New, a filter box, pin, rename (F2 or double-click), delete (Del) with an undo bar.
// GUI thread only.
#pragma once

#include <QWidget>

class QLineEdit;
class QListView;
class QPushButton;
class QSortFilterProxyModel;

namespace ui {

class ConversationListModel;
class MessageBar;

class ConversationSidebar : public QWidget {
    Q_OBJECT
public:
    explicit ConversationSidebar(ConversationListModel& model, QWidget* parent = nullptr);

    QLineEdit* searchBox() const { return m_search; }
    QListView* list() const { return m_list; }
    qint64 currentId() const;
    void selectConversation(qint64 id);

    void renameCurrent();
    void deleteCurrent();
    void togglePinCurrent();

Q_SIGNALS:
    void newRequested();
    void conversationActivated(qint64 id);
    void renameRequested(qint64 id, const QString& title);
    void pinRequested(qint64 id, bool pinned);

protected:
    bool eventFilter(QObject* watched, QEvent* event) override;

private:
    void showContextMenu(const QPoint& pos);

    ConversationListModel& m_model;
    QSortFilterProxyModel* m_proxy;
    QLineEdit* m_search;
    QListView* m_list;
    QPushButton* m_new;
    MessageBar* m_undoBar;
};

}  // namespace ui
