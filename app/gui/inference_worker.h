// Owns the Model and the Session; lives on the inference thread (a parentless QObject moved there by
// InferenceController, STYLE.md rule 14). Its slots run on that thread; results leave as queued signals carrying the
// value types of worker_types.h. cancelUpTo() is the one member any thread may call.
#pragma once

#include "worker_types.h"

#include <QObject>

#include <atomic>
#include <memory>

namespace inference {
class Model;
class Session;
}  // namespace inference

namespace app {

class InferenceWorker : public QObject {
    Q_OBJECT
public:
    InferenceWorker();
    ~InferenceWorker() override;

    // Thread-safe: every load or answer with requestId <= `requestId` stops at the next token (or load step).
    void cancelUpTo(quint64 requestId);

public Q_SLOTS:
    void loadModel(const app::LoadRequest& request);
    void generate(const app::GenerateRequest& request);
    void applySettings(const ui::SettingsValues& settings);
    // Rebuilds the session of a reopened conversation: imports the stored KV, prefills the rounds without it.
    void restore(const app::RestoreData& data);

Q_SIGNALS:
    void loadProgress(const app::LoadProgress& progress);
    void modelLoaded(const app::ModelInfo& info);
    void tokenChunk(const app::TokenChunk& chunk);
    void generationDone(const app::GenerationDone& done);
    void failed(const app::ErrorInfo& error);
    void memorySample(const ui::MemorySample& sample);
    void restored(const app::RestoreDone& done);

private:
    bool cancelled(quint64 requestId) const { return requestId <= m_cancelledUpTo.load(); }
    bool ensureSession(const GenerateRequest& request);
    bool startSession(quint64 requestId, qint64 conversationId);
    RoundKv exportRound(int round) const;
    void emitMemorySample(quint64 kvInVram, quint64 recalledKv);

    std::unique_ptr<inference::Model> m_model;
    std::unique_ptr<inference::Session> m_session;  // declared after m_model: destroyed first, it borrows the model
    qint64 m_sessionConversation = 0;
    int m_calibratedWatershed = -1;  // L_w from the model's calibration file; -1: none
    ui::SettingsValues m_settings;
    std::atomic<quint64> m_cancelledUpTo{0};  // the only state shared across threads
};

}  // namespace app
