// The Models page: the loaded model, "Open GGUF file…", and one card per known chat model with Download / Resume,
// Cancel and Use, a progress bar and the checksum result. GUI thread only.
#pragma once

#include <QWidget>

#include "ui/types.h"

class QLabel;
class QVBoxLayout;

namespace ui {

class ModelCard;

class ModelManager : public QWidget {
    Q_OBJECT
public:
    enum class State { Missing, Downloading, Paused, Ready, Failed };
    struct Status {
        State state = State::Missing;
        quint64 received = 0;
        quint64 total = 0;      // 0 while unknown
        QString message;        // e.g. the computed sha256, or why it failed
    };

    explicit ModelManager(QWidget* parent = nullptr);

    void setKnownModels(const QList<KnownModel>& models);
    void setStatus(const QString& modelId, const Status& status);
    Status status(const QString& modelId) const;
    void setCurrentModel(const QString& name, const QString& path, const QString& details);

Q_SIGNALS:
    void openFileRequested();
    void downloadRequested(const QString& modelId);
    void cancelRequested(const QString& modelId);
    void useRequested(const QString& modelId);

private:
    QLabel* m_current;
    QLabel* m_currentDetails;
    QVBoxLayout* m_cards;
    QList<ModelCard*> m_cardList;
};

}  // namespace ui
