// Owns the Model and the Session; lives on the inference thread (a parentless QObject moved there by
// InferenceController, STYLE.md rule 14). Its slots run on that thread; results leave as queued signals carrying the
// value types of worker_types.h. cancelUpTo() is the one member any thread may call.
#pragma once

#include "worker_types.h"

#include <QObject>

#include <atomic>
#include <memory>
#include <vector>

namespace inference {
class Model;
class Session;
struct SessionOptions;
}  // namespace inference

namespace app {

// What the model's calibration files (inference/calibration.h), read when it is loaded, give its sessions.
struct ModelCalibration {
    int watershedLayer = -1;              // L_w; -1: none (the session uses n_layer / 2)
    std::vector<int> sharingGroupStarts;  // first layer of each KV-sharing layer group; empty: none, nothing shared
};

// The session options for `settings` on a model of nLayers layers. A free function so tests can check the mapping.
inference::SessionOptions sessionOptions(const ui::SettingsValues& settings, int nLayers,
                                         const ModelCalibration& calibration);

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
    // A sentence for the user that is no error: a setting that has no effect on this model (at most once per load).
    void notice(const QString& text);

private:
    bool cancelled(quint64 requestId) const { return requestId <= m_cancelledUpTo.load(); }
    bool ensureSession(const GenerateRequest& request);
    bool startSession(quint64 requestId, qint64 conversationId);
    RoundKv exportRound(int round) const;
    void emitMemorySample(quint64 kvInVram, quint64 recalledKv);
    // sessionOptions() for m_settings and the loaded model; emits notice() when KV sharing is on but shares nothing.
    inference::SessionOptions currentOptions();

    std::unique_ptr<inference::Model> m_model;
    std::unique_ptr<inference::Session> m_session;  // declared after m_model: destroyed first, it borrows the model
    qint64 m_sessionConversation = 0;
    ModelCalibration m_calibration;
    bool m_sharingNoticeShown = false;  // since the model was loaded
    ui::SettingsValues m_settings;
    std::atomic<quint64> m_cancelledUpTo{0};  // the only state shared across threads
};

}  // namespace app
