// GUI-thread front of the inference worker: owns the QThread and the worker (parentless, moved to the thread, deleted
// on finished), hands out request ids and forwards requests and replies as queued signals (STYLE.md rules 14-16).
// Shutdown: cancel, quit(), wait().
#pragma once

#include "worker_types.h"

#include <QObject>
#include <QThread>

namespace app {

class InferenceWorker;

class InferenceController : public QObject {
    Q_OBJECT
public:
    explicit InferenceController(QObject* parent = nullptr);
    ~InferenceController() override;

    // Each returns the request id that the replies carry.
    // calibrationDir: where per-model calibration files are looked up (empty: none).
    quint64 loadModel(const QString& path, ui::BackendChoice backend, int contextLength,
                      const QString& calibrationDir);
    quint64 generate(GenerateRequest request);
    void applySettings(const ui::SettingsValues& settings);
    // Rebuilds the session of a reopened conversation from what the storage worker read; replies with restored().
    void restore(const RestoreData& data);
    // Stops the running answer or load (and any queued before it) at the next token.
    void cancelAll();

Q_SIGNALS:
    void loadProgress(const app::LoadProgress& progress);
    void modelLoaded(const app::ModelInfo& info);
    void tokenChunk(const app::TokenChunk& chunk);
    void generationDone(const app::GenerationDone& done);
    void failed(const app::ErrorInfo& error);
    void memorySample(const ui::MemorySample& sample);
    void restored(const app::RestoreDone& done);
    void notice(const QString& text);

    // To the worker (queued).
    void loadRequested(const app::LoadRequest& request);
    void generateRequested(const app::GenerateRequest& request);
    void settingsChanged(const ui::SettingsValues& settings);
    void restoreRequested(const app::RestoreData& data);

private:
    QThread m_thread;
    InferenceWorker* m_worker;  // owned by m_thread's finished -> deleteLater
    quint64 m_nextId = 1;
};

}  // namespace app
