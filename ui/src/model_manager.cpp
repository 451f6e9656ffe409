#include "ui/model_manager.h"

#include <QGridLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QProgressBar>
#include <QPushButton>
#include <QScrollArea>
#include <QVBoxLayout>

namespace ui {

// One known model: what it is, its download state and the buttons that apply to that state.
class ModelCard : public QFrame {
public:
    ModelCard(const KnownModel& model, ModelManager* manager) : QFrame(manager), m_model(model) {
        setFrameShape(QFrame::StyledPanel);
        setObjectName(QStringLiteral("modelCard"));
        auto* name = new QLabel(QStringLiteral("<b>%1</b> <span style='color:gray'>%2 · %3</span>")
                                    .arg(model.name.toHtmlEscaped(), model.fileName.toHtmlEscaped(),
                                         model.sizeBytes ? formatBytes(model.sizeBytes) : ModelManager::tr("size unknown")),
                                this);
        auto* description = new QLabel(model.description, this);
        description->setWordWrap(true);
        m_status = new QLabel(this);
        m_status->setWordWrap(true);
        m_status->setTextInteractionFlags(Qt::TextSelectableByMouse);
        m_progress = new QProgressBar(this);
        m_progress->setAccessibleName(ModelManager::tr("Download progress of %1").arg(model.name));
        m_download = new QPushButton(ModelManager::tr("Download"), this);
        m_cancel = new QPushButton(ModelManager::tr("Cancel"), this);
        m_use = new QPushButton(ModelManager::tr("Use"), this);
        for (QPushButton* b : {m_download, m_cancel, m_use})
            b->setAccessibleDescription(model.name);
        QObject::connect(m_download, &QPushButton::clicked, manager,
                         [manager, id = model.id] { Q_EMIT manager->downloadRequested(id); });
        QObject::connect(m_cancel, &QPushButton::clicked, manager,
                         [manager, id = model.id] { Q_EMIT manager->cancelRequested(id); });
        QObject::connect(m_use, &QPushButton::clicked, manager,
                         [manager, id = model.id] { Q_EMIT manager->useRequested(id); });

        auto* grid = new QGridLayout(this);
        grid->addWidget(name, 0, 0, 1, 2);
        grid->addWidget(description, 1, 0, 1, 2);
        grid->addWidget(m_progress, 2, 0);
        auto* buttons = new QHBoxLayout;
        buttons->addWidget(m_download);
        buttons->addWidget(m_cancel);
        buttons->addWidget(m_use);
        grid->addLayout(buttons, 2, 1);
        grid->addWidget(m_status, 3, 0, 1, 2);
        grid->setColumnStretch(0, 1);
        setStatus({});
    }

    const QString& id() const { return m_model.id; }
    const ModelManager::Status& status() const { return m_state; }

    void setStatus(const ModelManager::Status& s) {
        using State = ModelManager::State;
        m_state = s;
        m_download->setText(s.state == State::Paused || (s.state == State::Failed && s.received > 0)
                                ? ModelManager::tr("Resume")
                                : ModelManager::tr("Download"));
        m_download->setVisible(!m_model.bundled && s.state != State::Ready && s.state != State::Downloading);
        m_cancel->setVisible(s.state == State::Downloading);
        m_use->setVisible(s.state == State::Ready);
        m_progress->setVisible(s.state == State::Downloading || s.state == State::Paused);
        m_progress->setRange(0, s.total ? 1000 : 0);
        if (s.total)
            m_progress->setValue(int(1000 * s.received / s.total));
        m_progress->setFormat(s.total ? QStringLiteral("%1 / %2").arg(formatBytes(s.received), formatBytes(s.total))
                                      : formatBytes(s.received));
        QString text = s.message;
        if (text.isEmpty()) {
            switch (s.state) {
            case State::Missing:
                text = m_model.bundled ? ModelManager::tr("Missing from this installation: reinstall RoundChat.")
                                       : ModelManager::tr("Not downloaded.");
                break;
            case State::Downloading: text = ModelManager::tr("Downloading…"); break;
            case State::Paused: text = ModelManager::tr("Paused. Resume continues where it stopped."); break;
            case State::Ready:
                text = m_model.bundled ? ModelManager::tr("Installed with RoundChat.")
                                       : ModelManager::tr("Downloaded.");
                break;
            case State::Failed: text = ModelManager::tr("Download failed."); break;
            }
        }
        m_status->setText(text);
    }

private:
    KnownModel m_model;
    ModelManager::Status m_state;
    QLabel* m_status;
    QProgressBar* m_progress;
    QPushButton* m_download;
    QPushButton* m_cancel;
    QPushButton* m_use;
};

ModelManager::ModelManager(QWidget* parent) : QWidget(parent) {
    m_current = new QLabel(tr("No model loaded"), this);
    QFont big = m_current->font();
    big.setPointSizeF(big.pointSizeF() * 1.35);
    big.setBold(true);
    m_current->setFont(big);
    m_currentDetails = new QLabel(this);
    m_currentDetails->setWordWrap(true);
    m_currentDetails->setTextInteractionFlags(Qt::TextSelectableByMouse);
    auto* open = new QPushButton(tr("&Open GGUF file…"), this);
    connect(open, &QPushButton::clicked, this, &ModelManager::openFileRequested);

    auto* cardsHost = new QWidget(this);
    m_cards = new QVBoxLayout(cardsHost);
    m_cards->addStretch();
    auto* scroll = new QScrollArea(this);
    scroll->setWidget(cardsHost);
    scroll->setWidgetResizable(true);
    scroll->setFrameShape(QFrame::NoFrame);

    auto* header = new QHBoxLayout;
    auto* currentBox = new QVBoxLayout;
    currentBox->addWidget(m_current);
    currentBox->addWidget(m_currentDetails);
    header->addLayout(currentBox, 1);
    header->addWidget(open, 0, Qt::AlignTop);

    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(16, 12, 16, 12);
    layout->addLayout(header);
    layout->addSpacing(8);
    layout->addWidget(new QLabel(tr("<b>Chat models you can download</b>"), this));
    layout->addWidget(scroll, 1);
}

void ModelManager::setKnownModels(const QList<KnownModel>& models) {
    qDeleteAll(m_cardList);
    m_cardList.clear();
    for (const KnownModel& m : models) {
        auto* card = new ModelCard(m, this);
        m_cards->insertWidget(m_cards->count() - 1, card);
        m_cardList.append(card);
    }
}

void ModelManager::setStatus(const QString& modelId, const Status& status) {
    for (ModelCard* card : m_cardList)
        if (card->id() == modelId)
            card->setStatus(status);
}

ModelManager::Status ModelManager::status(const QString& modelId) const {
    for (const ModelCard* card : m_cardList)
        if (card->id() == modelId)
            return card->status();
    return {};
}

void ModelManager::setCurrentModel(const QString& name, const QString& path, const QString& details) {
    m_current->setText(name);
    m_currentDetails->setText(path.isEmpty() ? details : path + QLatin1Char('\n') + details);
}

}  // namespace ui
