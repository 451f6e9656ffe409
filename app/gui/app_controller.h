// Wires the main window to the workers: owns the item models, the window, the inference and storage controllers and
// the downloader, and keeps the state of the running answer. Everything here runs on the GUI thread.
#pragma once

#include "app_settings.h"
#include "downloader.h"
#include "worker_types.h"
#include "inference_controller.h"
#include "storage_controller.h"
#include "ui/conversation_list_model.h"
#include "ui/main_window.h"
#include "ui/message_list_model.h"

#include <QNetworkAccessManager>
#include <QObject>
#include <QTimer>

#include <memory>

namespace app {

enum class ErrorContext;

class AppController : public QObject {
    Q_OBJECT
public:
    // `store` is borrowed. dataDir: where the database and downloaded models live (AppDataLocation).
    // modelOverride: --model PATH, empty for the saved or bundled model.
    AppController(QSettings& store, const QString& dataDir, const QString& modelOverride, QObject* parent = nullptr);
    ~AppController() override;

    void start();
    ui::MainWindow& window() { return *m_window; }

    // A model file shipped with the app (resources/models/), e.g. the default stories260K.gguf, or empty when not
    // found.
    static QString bundledModel(const QString& fileName);
    // The settings the inference worker runs with now: the shown conversation's own, or the app-wide defaults when
    // no conversation is open.
    const ui::SettingsValues& activeSettings() const { return m_active; }

Q_SIGNALS:
    // A reopened conversation's session was rebuilt (after the status bar said how).
    void conversationRestored(const app::RestoreDone& done);
    // The model is loaded and the input accepts messages (the headless smoke test waits for this).
    void modelReady(const app::ModelInfo& info);
    // An error sentence was shown to the user in the chat pane.
    void errorShown(const QString& text);

private:
    struct Exchange {  // the answer being generated
        quint64 inferenceId = 0;
        qint64 conversationId = 0;
        quint64 userSaveRequest = 0;  // set when the question was saved in this exchange
        qint64 userMessageId = 0;     // set when the question was already in the database (regenerate)
        int round = 0;
        bool branch = false;          // regenerate or edit: reload the branch arrows after saving
    };

    void connectChat();
    void connectStorage();
    void connectInference();
    void connectModels();
    void connectHistory();

    void loadModel(const QString& path);
    // parentRequest: the save request of the parent when its id is not known yet (0 otherwise).
    void send(const QString& text, qint64 parentId, quint64 parentRequest);
    void generate(const QList<RoundText>& history, const QString& text, bool regenerate, Exchange exchange);
    QList<RoundText> historyBefore(int row) const;
    void selectConversation(qint64 id);
    // Asks storage for the current conversation's stored KV, for the loaded model (after a switch or a load).
    void requestRestore();
    void showError(int code, ErrorContext context, const QString& subject, const QString& detail);
    void onErrorAction(const QString& actionId);
    void openSettings();
    void openConversationSettings();
    // Sends the shown conversation's settings (or the defaults) to the inference worker.
    void applyActiveSettings();
    void openModelFile();
    QString modelsDir() const;
    // Where a known model's file lives: the app's own models for bundled ones, the download folder for the rest.
    QString modelPath(const ui::KnownModel& model) const;
    void refreshModelStates();

    QString m_dataDir;
    QString m_modelOverride;
    AppSettings m_settings;
    ui::SettingsValues m_values;   // app-wide; the defaults of new conversations
    ui::SettingsValues m_active;   // what the inference worker was last given
    ui::MessageListModel m_messages;
    ui::ConversationListModel m_conversations;
    std::unique_ptr<ui::MainWindow> m_window;  // after the models it shows: destroyed before them
    InferenceController m_inference;
    StorageController m_storage;
    QNetworkAccessManager m_network;
    Downloader m_downloader;
    QList<ui::KnownModel> m_known;
    QTimer m_hostMemoryTimer;

    qint64 m_conversationId = 0;
    Exchange m_exchange;
    QString m_pendingSend;         // the first question of a conversation being created
    quint64 m_createRequest = 0;
    quint64 m_importRequest = 0;
    quint64 m_exportRequest = 0;
    quint64 m_searchRequest = 0;
    quint64 m_lastSaveRequest = 0;  // the latest appendMessage, for a parent whose id has not come back yet
    quint64 m_loadRequest = 0;
    QString m_loadingPath;
    ModelInfo m_model;
    bool m_modelReady = false;
    qint64 m_scrollTo = 0;         // message to show once its conversation is loaded (history search)
    quint64 m_storedKv = 0;        // bytes of KV snapshots in the database, for the settings dialog
};

}  // namespace app
