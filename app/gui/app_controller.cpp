#include "app_controller.h"

#include "error_text.h"
#include "known_models.h"
#include "memory_probe.h"
#include "ui/chat_view.h"
#include "ui/conversation_sidebar.h"
#include "ui/history_browser.h"
#include "ui/message_bar.h"
#include "ui/model_manager.h"
#include "ui/settings_dialog.h"
#include "ui/vram_dashboard.h"

#include <QCoreApplication>
#include <QDesktopServices>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QListView>
#include <QStandardPaths>
#include <QStatusBar>
#include <QUrl>

namespace app {

using roundchat::ErrorCode;

namespace {
constexpr int kTitleChars = 48;
constexpr int kHostMemoryIntervalMs = 1000;
constexpr quint64 kBytesPerMb = 1000 * 1000;  // decimal, as formatBytes shows them
const QString kStoryModelFile = QStringLiteral("stories260K.gguf");

QString titleFrom(const QString& text) {
    const QString line = text.simplified();
    return line.size() <= kTitleChars ? line : line.left(kTitleChars - 1) + QChar(0x2026);
}
}  // namespace

AppController::AppController(QSettings& store, const QString& dataDir, const QString& modelOverride, QObject* parent)
    : QObject(parent),
      m_dataDir(dataDir),
      m_modelOverride(modelOverride),
      m_settings(store),
      m_values(m_settings.values()),
      m_window(std::make_unique<ui::MainWindow>(m_messages, m_conversations)),
      m_downloader(m_network) {
    connectChat();
    connectStorage();
    connectInference();
    connectModels();
    connectHistory();
    connect(m_window.get(), &ui::MainWindow::settingsRequested, this, &AppController::openSettings);
    connect(m_window.get(), &ui::MainWindow::loadCancelRequested, this, [this] { m_inference.cancelAll(); });
    m_hostMemoryTimer.setInterval(kHostMemoryIntervalMs);
    connect(&m_hostMemoryTimer, &QTimer::timeout, this, [this] {
        m_window->dashboard()->addSample(hostMemorySample(m_model.deviceName));
    });
}

AppController::~AppController() {
    m_settings.setWindowGeometry(m_window->saveGeometry());
    m_settings.setLastConversation(m_conversationId);
    m_inference.cancelAll();
}

QString AppController::bundledModel(const QString& fileName) {
    const QString appDir = QCoreApplication::applicationDirPath();
    // The installed copy, found relative to the executable so the .deb (prefix /usr) and `cmake --install --prefix`
    // both work; then the XDG data directories; then, for a build-tree run, the source tree.
    QStringList candidates{appDir + QStringLiteral("/" ROUNDCHAT_MODELS_FROM_BINDIR "/") + fileName,
                           QStandardPaths::locate(QStandardPaths::GenericDataLocation,
                                                  QStringLiteral("roundchat/models/") + fileName)};
#ifdef ROUNDCHAT_BUILD_TREE_MODELS
    candidates << QStringLiteral(ROUNDCHAT_BUILD_TREE_MODELS "/") + fileName;
#endif
    for (const QString& c : candidates)
        if (!c.isEmpty() && QFileInfo::exists(c))
            return QFileInfo(c).canonicalFilePath();
    return {};
}

QString AppController::modelsDir() const { return m_dataDir + QStringLiteral("/models"); }

QString AppController::modelPath(const ui::KnownModel& model) const {
    return model.bundled ? bundledModel(model.fileName) : modelsDir() + QLatin1Char('/') + model.fileName;
}

void AppController::start() {
    ui::applyTheme(m_values.theme);
    m_window->applyShortcuts(m_values);
    applyActiveSettings();
    if (const QByteArray g = m_settings.windowGeometry(); !g.isEmpty())
        m_window->restoreGeometry(g);
    m_window->chat()->setInputEnabled(false, tr("Loading the model…"));
    m_window->show();

    QString error;
    m_known = loadKnownModels(&error);
    if (m_known.isEmpty())
        qWarning("known model list: %s", qPrintable(error));
    m_window->models()->setKnownModels(m_known);
    refreshModelStates();

    QDir().mkpath(m_dataDir);
    m_storage.open(m_dataDir + QStringLiteral("/roundchat.sqlite3"));
    m_storage.listConversations();

    QString model = !m_modelOverride.isEmpty() ? m_modelOverride : m_settings.modelPath();
    if (model.isEmpty() || (!QFileInfo::exists(model) && m_modelOverride.isEmpty()))
        model = bundledModel(kStoryModelFile);
    if (model.isEmpty()) {
        const QString text = tr("No model yet. Download a chat model or open a GGUF file.");
        m_window->chat()->showError(text, tr("Choose model…"), kActionOpenModel);
        Q_EMIT errorShown(text);
        m_window->showPage(ui::MainWindow::Page::Models);
        return;
    }
    loadModel(model);
}

void AppController::refreshModelStates() {
    for (const ui::KnownModel& m : m_known) {
        const QString path = modelPath(m);
        ui::ModelManager::Status s;
        if (!path.isEmpty() && QFileInfo::exists(path)) {
            s.state = ui::ModelManager::State::Ready;
        } else if (const QFileInfo part(Downloader::partPath(path)); !m.bundled && part.exists()) {
            s.state = ui::ModelManager::State::Paused;
            s.received = quint64(part.size());
            s.total = m.sizeBytes;
        }
        m_window->models()->setStatus(m.id, s);
    }
}

// ---- Models and inference

void AppController::loadModel(const QString& path) {
    if (m_exchange.inferenceId != 0)
        m_inference.cancelAll();
    m_modelReady = false;
    m_loadingPath = path;
    m_window->chat()->setInputEnabled(false, tr("Loading the model…"));
    m_window->setLoadProgress(tr("Loading %1").arg(QFileInfo(path).fileName()), 0.0);
    m_loadRequest = m_inference.loadModel(path, m_values.backend, m_values.contextLength,
                                          m_dataDir + QStringLiteral("/calibration"));
}

void AppController::connectInference() {
    connect(&m_inference, &InferenceController::loadProgress, this, [this](const LoadProgress& p) {
        if (p.requestId == m_loadRequest)
            m_window->setLoadProgress(tr("Loading %1").arg(QFileInfo(m_loadingPath).fileName()), p.fraction);
    });
    connect(&m_inference, &InferenceController::modelLoaded, this, [this](const ModelInfo& info) {
        if (info.requestId != m_loadRequest)
            return;
        m_model = info;
        m_modelReady = true;
        m_window->clearLoadProgress();
        m_window->chat()->setInputEnabled(true, tr("Message %1 (Enter to send, Shift+Enter for a new line)")
                                                    .arg(info.name));
        const QString backend = info.gpu ? tr("GPU: %1").arg(info.deviceName) : tr("CPU");
        m_window->chat()->setBackendText(backend, info.gpu ? tr("%1 of %2 GPU memory free at load")
                                                                 .arg(ui::formatBytes(info.deviceFreeBytes),
                                                                      ui::formatBytes(info.deviceTotalBytes))
                                                           : info.deviceName);
        m_window->chat()->setContextUsage(0, info.contextLength);
        m_window->setModelStatus(tr("%1 · %2 · %3 layers · %4 context").arg(info.name, backend)
                                     .arg(info.layerCount).arg(info.contextLength));
        m_window->models()->setCurrentModel(info.name, info.path,
                                            tr("%1 weights on %2").arg(ui::formatBytes(info.weightBytes), backend));
        if (m_modelOverride.isEmpty() || info.path != m_modelOverride)
            m_settings.setModelPath(info.path);
        if (info.gpu)
            m_hostMemoryTimer.stop();
        else
            m_hostMemoryTimer.start();
        // The log lines on stderr let tests/ui/e2e_xvfb_app_test.sh follow the real executable from outside.
        qInfo("model ready: %s on %s", qPrintable(info.name), qPrintable(backend));
        if (!info.fallbackReason.isEmpty() && m_values.backend != ui::BackendChoice::Cpu) {
            qInfo("CPU fallback: %s", qPrintable(info.fallbackReason));
            const QString reason = info.fallbackReason.endsWith(QLatin1Char('.'))
                                       ? info.fallbackReason
                                       : info.fallbackReason + QLatin1Char('.');
            m_window->chat()->errorBar()->showMessage(
                ui::MessageBar::Level::Info,
                tr("%1 runs on the CPU: %2 Answers are slower; the VRAM dashboard shows host memory.")
                    .arg(info.name, reason));
        }
        if (QFileInfo(info.path).fileName() == kStoryModelFile && !m_settings.tinyModelBannerDismissed())
            m_window->chat()->banner()->showMessage(
                ui::MessageBar::Level::Info,
                tr("You are using the tiny bundled story model (260K parameters): it continues short stories "
                   "rather than answering questions. Download a real chat model for conversations."),
                tr("Download a chat model"), QStringLiteral("models"));
        else
            m_window->chat()->banner()->hide();
        if (!info.templateNotice.isEmpty())
            m_window->statusBar()->showMessage(info.templateNotice, 10000);
        requestRestore();
        Q_EMIT modelReady(info);
    });
    connect(&m_inference, &InferenceController::tokenChunk, this,
            [this](const TokenChunk& c) { m_messages.appendToStreaming(c.requestId, c.text); });
    connect(&m_inference, &InferenceController::generationDone, this, [this](const GenerationDone& d) {
        if (d.requestId != m_exchange.inferenceId)
            return;
        const Exchange ex = std::exchange(m_exchange, Exchange{});
        m_window->chat()->setGenerating(false);
        if (d.recall.valid) {  // not for a request cancelled before it started: it has no figures
            m_window->chat()->setContextUsage(d.usedTokens, d.contextLength);
            m_window->chat()->setTokensPerSecond(d.tokensPerSecond);
            m_window->dashboard()->addAnswer(d.recall);
        }
        if (d.text.isEmpty()) {
            m_messages.abortStreaming(d.requestId);  // stopped before the first token: nothing to keep
        } else {
            ui::MessageData answer;
            answer.parentId = ex.userMessageId;
            answer.role = ui::MessageRole::Assistant;
            answer.text = d.text;
            answer.round = ex.round;
            answer.recall = d.recall;
            m_messages.finishStreaming(d.requestId, answer);
            const QModelIndex shown = m_messages.index(m_messages.rowCount() - 1);
            qInfo("answer done: conversation %lld round %d; badge \"%s\"; dashboard answers %d",
                  ex.conversationId, ex.round,
                  qPrintable(m_messages.data(shown, ui::MessageListModel::BadgeTextRole).toString()),
                  m_window->dashboard()->answerCount());
            m_lastSaveRequest = m_storage.appendMessage(ex.conversationId, answer,
                                                        ex.userMessageId ? 0 : ex.userSaveRequest, d.recallDetails);
            if (d.roundKv.bytes)  // queued after the answer's save, so its round is on the branch
                m_storage.writeRoundKv(ex.conversationId, d.roundKv);
            if (ex.branch)
                m_storage.loadMessages(ex.conversationId);  // new sibling: refresh the ‹ i/n › arrows
        }
        if (d.stopReason == StopReason::ContextFull)
            showError(int(ErrorCode::ContextFull), ErrorContext::Generate, {}, {});
    });
    connect(&m_inference, &InferenceController::restored, this, [this](const RestoreDone& r) {
        qInfo("conversation %lld: restored %d rounds from disk (%d tokens); %d rounds recomputed; %d tokens prefilled",
              r.conversationId, r.restoredRounds, r.restoredTokens, r.recomputedRounds, r.prefilledTokens);
        if (r.conversationId == m_conversationId)  // the meter showed the conversation left before
            m_window->chat()->setContextUsage(r.restoredTokens + r.prefilledTokens, m_model.contextLength);
        if (r.restoredRounds + r.recomputedRounds > 0) {
            QString text = tr("Restored %1 rounds from disk").arg(r.restoredRounds);
            if (r.recomputedRounds > 0)
                text += tr("; %1 rounds recomputed (%2)").arg(r.recomputedRounds).arg(r.reason);
            m_window->statusBar()->showMessage(text, 10000);
        }
        Q_EMIT conversationRestored(r);
    });
    connect(&m_inference, &InferenceController::failed, this, [this](const ErrorInfo& e) {
        if (e.requestId != 0 && e.requestId == m_loadRequest) {
            m_window->clearLoadProgress();
            m_window->chat()->setInputEnabled(false, tr("No model loaded"));
            if (e.code == int(ErrorCode::Cancelled))
                return;
            showError(e.code, ErrorContext::LoadModel, QFileInfo(m_loadingPath).fileName(), e.detail);
            return;
        }
        if (e.requestId != 0 && e.requestId == m_exchange.inferenceId) {
            m_messages.abortStreaming(e.requestId);
            m_window->chat()->setGenerating(false);
            m_exchange = {};
        }
        showError(e.code, ErrorContext::Generate, m_model.name, e.detail);
    });
    connect(&m_inference, &InferenceController::memorySample, m_window->dashboard(), &ui::VramDashboard::addSample);
    connect(&m_inference, &InferenceController::notice, this, [this](const QString& text) {
        qInfo("notice: %s", qPrintable(text));
        m_window->chat()->errorBar()->showMessage(ui::MessageBar::Level::Info, text);
    });
}

// ---- Chat

QList<RoundText> AppController::historyBefore(int row) const {
    QList<RoundText> rounds;
    for (int r = 0; r < row && r < m_messages.rowCount(); ++r) {
        const ui::MessageData& m = m_messages.messageAt(r);
        if (m.role == ui::MessageRole::User)
            rounds.append({m.text, {}});
        else if (m.role == ui::MessageRole::Assistant && !rounds.isEmpty())
            rounds.last().answer = m.text;
    }
    return rounds;
}

void AppController::generate(const QList<RoundText>& history, const QString& text, bool regenerate, Exchange exchange) {
    GenerateRequest request;
    request.conversationId = exchange.conversationId;
    request.history = history;
    request.userText = text;
    request.regenerate = regenerate;
    exchange.inferenceId = m_inference.generate(request);
    exchange.round = int(history.size()) + 1;
    m_exchange = exchange;
    m_messages.beginStreaming(exchange.inferenceId, exchange.round);
    m_window->chat()->setGenerating(true);
}

void AppController::send(const QString& text, qint64 parentId, quint64 parentRequest) {
    const QList<RoundText> history = historyBefore(m_messages.rowCount());
    ui::MessageData question;
    question.parentId = parentId;
    question.role = ui::MessageRole::User;
    question.text = text;
    question.round = int(history.size()) + 1;
    m_messages.appendMessage(question);
    Exchange ex;
    ex.conversationId = m_conversationId;
    ex.userSaveRequest = m_storage.appendMessage(m_conversationId, question, parentRequest);
    m_lastSaveRequest = ex.userSaveRequest;
    ex.branch = parentId != 0 && m_messages.rowCount() > 1 &&
                m_messages.messageAt(m_messages.rowCount() - 2).id != parentId;
    generate(history, text, false, ex);
}

void AppController::connectChat() {
    ui::ChatView* chat = m_window->chat();
    connect(chat, &ui::ChatView::sendRequested, this, [this](const QString& text) {
        if (!m_modelReady || m_exchange.inferenceId != 0)
            return;
        if (m_conversationId == 0) {
            m_pendingSend = text;
            m_createRequest = m_storage.createConversation(titleFrom(text), m_values.systemPrompt,
                                                           conversationSettingsJson(m_values));
            return;
        }
        // The last answer's save may still be on its way: then its request names the parent.
        const int n = m_messages.rowCount();
        const qint64 parent = n > 0 ? m_messages.messageAt(n - 1).id : 0;
        send(text, parent, n > 0 && parent == 0 ? m_lastSaveRequest : 0);
    });
    connect(chat, &ui::ChatView::editResendRequested, this, [this](qint64 messageId, const QString& text) {
        const int row = m_messages.rowOfId(messageId);
        if (row < 0 || !m_modelReady || m_exchange.inferenceId != 0)
            return;
        const qint64 parent = m_messages.messageAt(row).parentId;
        m_messages.truncateFrom(row);
        send(text, parent, 0);
        m_exchange.branch = true;
    });
    connect(chat, &ui::ChatView::regenerateRequested, this, [this](qint64 answerId) {
        const int row = m_messages.rowOfId(answerId);
        if (row < 1 || !m_modelReady || m_exchange.inferenceId != 0)
            return;
        const ui::MessageData question = m_messages.messageAt(row - 1);
        if (question.role != ui::MessageRole::User)
            return;
        const QList<RoundText> history = historyBefore(row - 1);
        m_messages.truncateFrom(row);
        Exchange ex;
        ex.conversationId = m_conversationId;
        ex.userMessageId = question.id;
        ex.branch = true;
        generate(history, question.text, true, ex);
    });
    connect(chat, &ui::ChatView::stopRequested, this, [this] {
        if (m_exchange.inferenceId != 0)
            m_inference.cancelAll();
    });
    connect(chat, &ui::ChatView::branchSwitchRequested, this,
            [this](qint64 messageId, int delta) { m_storage.switchBranch(messageId, delta); });
    connect(chat, &ui::ChatView::errorActionClicked, this, &AppController::onErrorAction);
    connect(chat, &ui::ChatView::conversationSettingsRequested, this, &AppController::openConversationSettings);
    connect(chat->banner(), &ui::MessageBar::actionClicked, this,
            [this] { m_window->showPage(ui::MainWindow::Page::Models); });
    connect(chat->banner(), &ui::MessageBar::dismissed, this, [this] { m_settings.setTinyModelBannerDismissed(true); });

    ui::ConversationSidebar* side = m_window->sidebar();
    connect(side, &ui::ConversationSidebar::newRequested, this, [this] {
        if (m_exchange.inferenceId != 0)
            m_inference.cancelAll();
        m_conversationId = 0;
        applyActiveSettings();
        m_messages.setMessages({});
        m_window->chat()->setContextUsage(0, m_model.contextLength);
        m_window->sidebar()->list()->clearSelection();
        m_window->showPage(ui::MainWindow::Page::Chat);
    });
    connect(side, &ui::ConversationSidebar::conversationActivated, this, &AppController::selectConversation);
    connect(side, &ui::ConversationSidebar::renameRequested, this,
            [this](qint64 id, const QString& title) { m_storage.renameConversation(id, title); });
    connect(side, &ui::ConversationSidebar::pinRequested, this,
            [this](qint64 id, bool pinned) { m_storage.setPinned(id, pinned); });
    connect(&m_conversations, &ui::ConversationListModel::removed, this, [this](qint64 id) {
        m_storage.deleteConversation(id);
        if (id == m_conversationId) {
            if (m_exchange.inferenceId != 0)
                m_inference.cancelAll();
            m_conversationId = 0;
            applyActiveSettings();
            m_messages.setMessages({});
        }
        m_window->history()->setConversations(m_conversations.conversations());
    });
    connect(&m_conversations, &ui::ConversationListModel::restored, this,
            [this](qint64 id) { m_storage.restoreConversation(id); });
}

void AppController::selectConversation(qint64 id) {
    if (id == m_conversationId)
        return;
    if (m_exchange.inferenceId != 0)
        m_inference.cancelAll();
    m_conversationId = id;
    applyActiveSettings();  // queued before the restore, so the session is rebuilt with this conversation's settings
    m_settings.setLastConversation(id);
    m_window->sidebar()->selectConversation(id);
    m_storage.loadMessages(id);
    requestRestore();
}

void AppController::requestRestore() {
    if (m_modelReady && m_conversationId != 0)
        m_storage.loadRestore(m_conversationId, m_model.fingerprint, m_model.templateHash, m_model.layerCount);
}

// ---- Storage

void AppController::connectStorage() {
    connect(&m_storage, &StorageController::opened, this, [this](quint64, bool recovered, const QString& moved) {
        if (recovered)
            showError(int(ErrorCode::CorruptFile), ErrorContext::Database, {},
                      QStringLiteral("database recovered; damaged copy at ") + moved);
    });
    connect(&m_storage, &StorageController::conversationsListed, this,
            [this](quint64, const QList<ui::ConversationInfo>& list) {
                m_conversations.setConversations(list);
                m_window->history()->setConversations(m_conversations.conversations());
                if (m_conversationId == 0 && m_settings.lastConversation() != 0 &&
                    m_conversations.rowOfId(m_settings.lastConversation()) >= 0)
                    selectConversation(m_settings.lastConversation());
                else if (m_conversationId != 0)
                    m_window->sidebar()->selectConversation(m_conversationId);
            });
    connect(&m_storage, &StorageController::conversationChanged, this,
            [this](quint64 requestId, const ui::ConversationInfo& info) {
                m_conversations.upsert(info);
                m_window->history()->setConversations(m_conversations.conversations());
                if (requestId != 0 && requestId == m_createRequest) {
                    m_conversationId = info.id;
                    applyActiveSettings();
                    m_settings.setLastConversation(info.id);
                    m_window->sidebar()->selectConversation(info.id);
                    send(std::exchange(m_pendingSend, QString()), 0, 0);
                } else if (requestId != 0 && requestId == m_importRequest) {
                    m_window->showPage(ui::MainWindow::Page::Chat);
                    selectConversation(info.id);
                }
            });
    connect(&m_storage, &StorageController::messagesLoaded, this, [this](const ConversationMessages& loaded) {
        // While this conversation streams an answer, the rows shown are newer than the database's. An answer of the
        // conversation the user just left does not hold up the one now shown.
        if (loaded.conversationId != m_conversationId ||
            (m_exchange.inferenceId != 0 && m_exchange.conversationId == loaded.conversationId))
            return;
        m_messages.setMessages(loaded.messages);
        if (m_scrollTo != 0)
            m_window->chat()->scrollToMessage(std::exchange(m_scrollTo, 0));
    });
    connect(&m_storage, &StorageController::messageSaved, this, [this](const MessageSaved& saved) {
        if (saved.conversationId != m_conversationId)
            return;
        if (saved.requestId == m_exchange.userSaveRequest)
            m_exchange.userMessageId = saved.message.id;
        // The row still has id 0: find it by role and round, from the end.
        for (int r = m_messages.rowCount() - 1; r >= 0; --r) {
            const ui::MessageData& m = m_messages.messageAt(r);
            if (m.id == 0 && !m.streaming && m.role == saved.message.role && m.round == saved.message.round) {
                ui::MessageData updated = m;
                updated.id = saved.message.id;
                updated.parentId = saved.message.parentId;
                m_messages.updateMessage(r, updated);
                break;
            }
        }
    });
    connect(&m_storage, &StorageController::restoreLoaded, this, [this](const RestoreData& data) {
        if (data.conversationId == m_conversationId)
            m_inference.restore(data);
    });
    connect(&m_storage, &StorageController::searchResults, this, [this](const SearchResults& results) {
        if (results.requestId == m_searchRequest)
            m_window->history()->setResults(results.query, results.hits);
    });
    connect(&m_storage, &StorageController::exported, this, [this](const ExportResult& r) {
        m_window->statusBar()->showMessage(tr("Exported to %1").arg(QDir::toNativeSeparators(r.path)), 8000);
    });
    connect(&m_storage, &StorageController::kvUsage, this, [this](const KvUsage& usage) {
        m_storedKv = usage.totalBytes;
        m_values.kvStorageCapMb = int((usage.capBytes + kBytesPerMb / 2) / kBytesPerMb);
        m_conversations.setKvBytes(usage.bytesByConversation);
        m_window->history()->setConversations(m_conversations.conversations());
        m_window->history()->setKvCap(usage.capBytes);
        if (usage.evictedSnapshots > 0)
            m_window->statusBar()->showMessage(
                tr("Freed %1 of stored KV (%n snapshot(s)). The text stays; those rounds are read again when "
                   "continued.", nullptr, usage.evictedSnapshots)
                    .arg(ui::formatBytes(usage.evictedBytes)),
                8000);
    });
    connect(&m_storage, &StorageController::failed, this, [this](const ErrorInfo& e) {
        const ErrorContext context = e.requestId == m_importRequest   ? ErrorContext::Import
                                     : e.requestId == m_exportRequest ? ErrorContext::Export
                                                                      : ErrorContext::Database;
        showError(e.code, context, {}, e.detail);
    });
}

// ---- Models page and downloads

void AppController::connectModels() {
    ui::ModelManager* models = m_window->models();
    connect(models, &ui::ModelManager::openFileRequested, this, &AppController::openModelFile);
    auto known = [this](const QString& id) -> const ui::KnownModel* {
        for (const ui::KnownModel& m : m_known)
            if (m.id == id)
                return &m;
        return nullptr;
    };
    connect(models, &ui::ModelManager::downloadRequested, this, [this, known](const QString& id) {
        if (const ui::KnownModel* m = known(id); m && !m->bundled) {
            m_window->models()->setStatus(id, {ui::ModelManager::State::Downloading, 0, m->sizeBytes, {}});
            m_downloader.start({id, QUrl(m->url), modelsDir() + QLatin1Char('/') + m->fileName, m->sha256});
        }
    });
    connect(models, &ui::ModelManager::cancelRequested, &m_downloader, &Downloader::cancel);
    connect(models, &ui::ModelManager::useRequested, this, [this, known](const QString& id) {
        if (const ui::KnownModel* m = known(id)) {
            loadModel(modelPath(*m));
            m_window->showPage(ui::MainWindow::Page::Chat);
        }
    });
    connect(&m_downloader, &Downloader::progress, this, [this](const QString& id, qint64 received, qint64 total) {
        m_window->models()->setStatus(id, {ui::ModelManager::State::Downloading, quint64(received),
                                           quint64(std::max<qint64>(total, 0)), {}});
    });
    connect(&m_downloader, &Downloader::cancelled, this, [this](const QString&) { refreshModelStates(); });
    connect(&m_downloader, &Downloader::finished, this,
            [this](const QString& id, const QString&, const QString& sha, bool verified) {
                const QString message =
                    verified ? tr("Downloaded and verified (sha256 %1).").arg(sha)
                             : tr("Downloaded. No published checksum is known for this file; its sha256 is %1. "
                                  "Compare it with the model's page before relying on it.").arg(sha);
                m_window->models()->setStatus(id, {ui::ModelManager::State::Ready, 0, 0, message});
            });
    connect(&m_downloader, &Downloader::failed, this,
            [this, known](const QString& id, int code, const QString& detail) {
                qWarning("download %s failed: %s", qPrintable(id), qPrintable(detail));
                const ui::KnownModel* m = known(id);
                const UserMessage msg = ErrorText::forCode(ErrorCode(code), ErrorContext::Download,
                                                           m ? m->name : id);
                const QFileInfo part(Downloader::partPath(modelsDir() + QLatin1Char('/') + (m ? m->fileName : id)));
                m_window->models()->setStatus(id, {ui::ModelManager::State::Failed,
                                                   part.exists() ? quint64(part.size()) : 0, 0, msg.text});
            });
}

void AppController::openModelFile() {
    const QString path = QFileDialog::getOpenFileName(m_window.get(), tr("Open a GGUF model"), modelsDir(),
                                                      tr("GGUF models (*.gguf);;All files (*)"));
    if (!path.isEmpty()) {
        loadModel(path);
        m_window->showPage(ui::MainWindow::Page::Chat);
    }
}

// ---- History page

void AppController::connectHistory() {
    ui::HistoryBrowser* history = m_window->history();
    connect(history, &ui::HistoryBrowser::searchRequested, this,
            [this](const QString& query) { m_searchRequest = m_storage.search(query); });
    connect(history, &ui::HistoryBrowser::hitActivated, this, [this](qint64 conversationId, qint64 messageId) {
        m_window->showPage(ui::MainWindow::Page::Chat);
        if (conversationId == m_conversationId) {
            m_window->chat()->scrollToMessage(messageId);
            return;
        }
        m_scrollTo = messageId;
        selectConversation(conversationId);
    });
    connect(history, &ui::HistoryBrowser::freeKvRequested, this, [this](qint64 id) { m_storage.freeKv(id); });
    connect(history, &ui::HistoryBrowser::exportRequested, this,
            [this](qint64 id, ui::HistoryBrowser::ExportFormat format) {
                const bool json = format == ui::HistoryBrowser::ExportFormat::Json;
                const int row = m_conversations.rowOfId(id);
                const QString base = row >= 0 ? m_conversations.at(row).title : tr("conversation");
                const QString path = QFileDialog::getSaveFileName(
                    m_window.get(), tr("Export conversation"),
                    QStandardPaths::writableLocation(QStandardPaths::DocumentsLocation) + QLatin1Char('/') +
                        QString(base).replace(QLatin1Char('/'), QLatin1Char('-')) +
                        (json ? QStringLiteral(".json") : QStringLiteral(".md")),
                    json ? tr("JSON (*.json)") : tr("Markdown (*.md)"));
                if (!path.isEmpty())
                    m_exportRequest = m_storage.exportConversation(id, json, path);
            });
    connect(history, &ui::HistoryBrowser::importRequested, this, [this] {
        const QString path = QFileDialog::getOpenFileName(m_window.get(), tr("Import a conversation"), {},
                                                          tr("JSON (*.json);;All files (*)"));
        if (!path.isEmpty())
            m_importRequest = m_storage.importConversation(path);
    });
}

// ---- Errors and settings

void AppController::showError(int code, ErrorContext context, const QString& subject, const QString& detail) {
    if (!detail.isEmpty())
        qWarning("%s: %s", roundchat::errorCodeName(ErrorCode(code)), qPrintable(detail));
    const UserMessage msg = ErrorText::forCode(ErrorCode(code), context, subject);
    if (msg.text.isEmpty())
        return;
    m_window->chat()->showError(msg.text, msg.actionText, msg.actionId);
    Q_EMIT errorShown(msg.text);
}

void AppController::onErrorAction(const QString& actionId) {
    if (actionId == kActionOpenModel) {
        m_window->showPage(ui::MainWindow::Page::Models);
        openModelFile();
    } else if (actionId == kActionUseCpu) {
        m_values.backend = ui::BackendChoice::Cpu;
        m_settings.setValues(m_values);
        if (!m_loadingPath.isEmpty())
            loadModel(m_loadingPath);
    } else if (actionId == kActionNewChat) {
        Q_EMIT m_window->sidebar()->newRequested();
    } else if (actionId == kActionShowDataFolder) {
        QDesktopServices::openUrl(QUrl::fromLocalFile(m_dataDir));
    } else if (actionId == kActionSettings) {
        openSettings();
    } else if (actionId == kActionRetry && !m_loadingPath.isEmpty() && !m_modelReady) {
        loadModel(m_loadingPath);
    }
}

void AppController::applyActiveSettings() {
    const int row = m_conversations.rowOfId(m_conversationId);
    m_active = row >= 0 ? conversationSettings(m_values, m_conversations.at(row)) : m_values;
    m_inference.applySettings(m_active);
}

void AppController::openSettings() {
    ui::SettingsDialog dialog(m_values, m_window.get());
    dialog.setStoredKvBytes(m_storedKv);
    if (dialog.exec() != QDialog::Accepted)
        return;
    const ui::SettingsValues old = std::exchange(m_values, dialog.values());
    m_settings.setValues(m_values);
    ui::applyTheme(m_values.theme);
    m_window->applyShortcuts(m_values);
    applyActiveSettings();
    if (old.kvStorageCapMb != m_values.kvStorageCapMb)
        m_storage.setKvCap(quint64(m_values.kvStorageCapMb) * kBytesPerMb);
    if ((old.backend != m_values.backend || old.contextLength != m_values.contextLength) && !m_loadingPath.isEmpty())
        loadModel(m_loadingPath);
}

void AppController::openConversationSettings() {
    const int row = m_conversations.rowOfId(m_conversationId);
    if (row < 0) {  // no conversation yet: the next one starts with the defaults
        openSettings();
        return;
    }
    const ui::ConversationInfo info = m_conversations.at(row);
    ui::SettingsDialog dialog(conversationSettings(m_values, info), m_window.get(),
                              ui::SettingsDialog::Scope::Conversation, info.title);
    if (dialog.exec() != QDialog::Accepted || m_conversationId != info.id)
        return;
    const ui::SettingsValues chosen = dialog.values();
    ui::ConversationInfo updated = info;
    updated.systemPrompt = chosen.systemPrompt;
    updated.settingsJson = conversationSettingsJson(chosen);
    m_conversations.upsert(updated);  // the database's reply brings the same values back
    m_storage.setConversationSettings(info.id, updated.systemPrompt, updated.settingsJson);
    applyActiveSettings();
}

}  // namespace app
