#include "inference_controller.h"

#include "inference_worker.h"

namespace app {

InferenceController::InferenceController(QObject* parent) : QObject(parent), m_worker(new InferenceWorker) {
    m_thread.setObjectName(QStringLiteral("inference"));
    m_worker->moveToThread(&m_thread);
    connect(&m_thread, &QThread::finished, m_worker, &QObject::deleteLater);
    // Every cross-thread connection in one place, each explicitly queued.
    constexpr auto q = Qt::QueuedConnection;
    connect(this, &InferenceController::loadRequested, m_worker, &InferenceWorker::loadModel, q);
    connect(this, &InferenceController::generateRequested, m_worker, &InferenceWorker::generate, q);
    connect(this, &InferenceController::settingsChanged, m_worker, &InferenceWorker::applySettings, q);
    connect(this, &InferenceController::restoreRequested, m_worker, &InferenceWorker::restore, q);
    connect(m_worker, &InferenceWorker::loadProgress, this, &InferenceController::loadProgress, q);
    connect(m_worker, &InferenceWorker::modelLoaded, this, &InferenceController::modelLoaded, q);
    connect(m_worker, &InferenceWorker::tokenChunk, this, &InferenceController::tokenChunk, q);
    connect(m_worker, &InferenceWorker::generationDone, this, &InferenceController::generationDone, q);
    connect(m_worker, &InferenceWorker::failed, this, &InferenceController::failed, q);
    connect(m_worker, &InferenceWorker::memorySample, this, &InferenceController::memorySample, q);
    connect(m_worker, &InferenceWorker::restored, this, &InferenceController::restored, q);
    connect(m_worker, &InferenceWorker::notice, this, &InferenceController::notice, q);
    m_thread.start();
}

InferenceController::~InferenceController() {
    cancelAll();
    m_thread.quit();
    m_thread.wait();
}

quint64 InferenceController::loadModel(const QString& path, ui::BackendChoice backend, int contextLength,
                                       const QString& calibrationDir) {
    const quint64 id = m_nextId++;
    Q_EMIT loadRequested(LoadRequest{id, path, backend, contextLength, calibrationDir});
    return id;
}

quint64 InferenceController::generate(GenerateRequest request) {
    request.requestId = m_nextId++;
    Q_EMIT generateRequested(request);
    return request.requestId;
}

void InferenceController::applySettings(const ui::SettingsValues& settings) { Q_EMIT settingsChanged(settings); }

void InferenceController::restore(const RestoreData& data) { Q_EMIT restoreRequested(data); }

void InferenceController::cancelAll() { m_worker->cancelUpTo(m_nextId - 1); }

}  // namespace app
