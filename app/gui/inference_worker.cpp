#include "inference_worker.h"

#include "inference/calibration.h"
#include "inference/model.h"
#include "inference/session.h"
#include "storage/kv_store.h"

#include <QThread>

#include <algorithm>

namespace app {

namespace {

constexpr int kRestoreReaders = 4;  // SQLite connections reading KV snapshots at once; more gained nothing measured

QString qs(const std::string& s) { return QString::fromStdString(s); }

}  // namespace

inference::SessionOptions sessionOptions(const ui::SettingsValues& s, int nLayers, const ModelCalibration& calibrated) {
    inference::SessionOptions o;
    o.systemPrompt = s.systemPrompt.toStdString();
    o.sampler.temperature = float(s.temperature);
    o.sampler.topK = s.topK;
    o.sampler.topP = float(s.topP);
    o.sampler.repeatPenalty = float(s.repeatPenalty);
    o.maxNewTokens = s.maxNewTokens;
    o.rounds.mode = s.roundAttention ? inference::KvMode::RoundAttention : inference::KvMode::FullKv;
    o.rounds.watershedLayer = s.watershedAuto ? calibrated.watershedLayer : std::min(s.watershedLayer, nLayers - 1);
    o.rounds.recallMass = float(s.recallMass);
    o.rounds.keepLatestRounds = s.keepLatestRounds;
    o.rounds.maxRecalledRounds = s.maxRecalledRounds;
    o.rounds.vramBudgetBytes = uint64_t(s.vramBudgetMb) * 1000 * 1000;
    o.rounds.sharing.enabled = s.kvSharing;
    o.rounds.sharing.sinkTokens = s.kvSharingSinkTokens;
    o.rounds.sharing.windowTokens = s.kvSharingWindowTokens;
    if (s.kvSharing)
        o.rounds.sharing.groupStarts = calibrated.sharingGroupStarts;
    return o;
}

InferenceWorker::InferenceWorker() = default;
InferenceWorker::~InferenceWorker() = default;

void InferenceWorker::cancelUpTo(quint64 requestId) {
    quint64 current = m_cancelledUpTo.load();
    while (current < requestId && !m_cancelledUpTo.compare_exchange_weak(current, requestId)) {
    }
}

void InferenceWorker::applySettings(const ui::SettingsValues& settings) {
    m_settings = settings;
    if (m_session && m_model) {
        if (inference::Status st = m_session->setOptions(currentOptions()); !st)
            Q_EMIT failed(ErrorInfo{0, int(st.error().code), qs(st.error().detail)});
    }
}

inference::SessionOptions InferenceWorker::currentOptions() {
    const int nLayers = m_model->config().nLayers;
    const std::vector<int>& groups = m_calibration.sharingGroupStarts;
    // Sharing without groups of two or more layers runs, but shares nothing: say so once per model, not silently.
    if (m_settings.kvSharing && (groups.empty() || int(groups.size()) >= nLayers) && !m_sharingNoticeShown) {
        m_sharingNoticeShown = true;
        Q_EMIT notice(groups.empty()
                          ? tr("Sharing distant keys between layers is on, but %1 has no layer groups: nothing is "
                               "shared until “roundchat-cli calibrate” is run for it.")
                                .arg(qs(m_model->name()))
                          : tr("Sharing distant keys between layers is on, but the calibration of %1 found no layers "
                               "alike enough to share: nothing is shared.")
                                .arg(qs(m_model->name())));
    }
    return sessionOptions(m_settings, nLayers, m_calibration);
}

void InferenceWorker::loadModel(const LoadRequest& request) {
    m_session.reset();
    m_sessionConversation = 0;
    inference::LoadOptions options;
    options.backend = inference::BackendKind(int(request.backend));
    options.contextLength = request.contextLength;
    int lastPercent = -1;
    options.progress = [this, &request, &lastPercent](float fraction) {
        const int percent = int(fraction * 100);
        if (percent != lastPercent) {  // at most 100 signals per load
            lastPercent = percent;
            Q_EMIT loadProgress(LoadProgress{request.requestId, double(fraction)});
        }
        return !cancelled(request.requestId);
    };
    auto loaded = inference::Model::load(request.path.toStdString(), options);
    if (!loaded) {
        Q_EMIT failed(ErrorInfo{request.requestId, int(loaded.error().code), qs(loaded.error().detail)});
        return;
    }
    m_model = std::move(*loaded);
    m_calibration = {};
    m_sharingNoticeShown = false;
    if (!request.calibrationDir.isEmpty()) {
        // No file is the usual case (the model was never calibrated): the session then uses n_layer / 2, and KV
        // sharing has no layer groups.
        const std::string dir = request.calibrationDir.toStdString();
        if (auto cal = inference::loadCalibration(dir, m_model->fingerprint()))
            m_calibration.watershedLayer = cal->watershedLayer;
        else if (cal.error().code != inference::ErrorCode::FileNotFound)
            qWarning("calibration for %s: %s", m_model->fingerprint().c_str(), cal.error().toString().c_str());
        if (auto cal = inference::loadKvSharingCalibration(dir, m_model->fingerprint()))
            m_calibration.sharingGroupStarts = std::move(cal->groupStarts);
        else if (cal.error().code != inference::ErrorCode::FileNotFound)
            qWarning("KV sharing calibration for %s: %s", m_model->fingerprint().c_str(),
                     cal.error().toString().c_str());
    }
    const inference::BackendInfo& b = m_model->backendInfo();
    ModelInfo info;
    info.requestId = request.requestId;
    info.path = request.path;
    info.name = qs(m_model->name());
    info.fingerprint = qs(m_model->fingerprint());
    info.gpu = b.kind == inference::BackendKind::Cuda;
    info.deviceName = qs(b.deviceName);
    info.fallbackReason = qs(b.fallbackReason);
    info.weightBytes = b.weightBytes;
    info.deviceTotalBytes = b.deviceTotalBytes;
    info.deviceFreeBytes = b.deviceFreeBytes;
    info.contextLength = m_model->contextLength();
    info.layerCount = m_model->config().nLayers;
    info.templateNotice = qs(m_model->chatTemplate().notice);
    info.templateHash = qs(m_model->templateHash());
    Q_EMIT modelLoaded(info);
    emitMemorySample(0, 0);
}

bool InferenceWorker::startSession(quint64 requestId, qint64 conversationId) {
    m_session.reset();
    m_sessionConversation = 0;
    auto created = inference::Session::create(*m_model, currentOptions());
    if (!created) {
        Q_EMIT failed(ErrorInfo{requestId, int(created.error().code), qs(created.error().detail)});
        return false;
    }
    m_session = std::move(*created);
    m_sessionConversation = conversationId;
    return true;
}

// A conversation the session does not hold (no restore came first): its past rounds are prefilled from their text.
bool InferenceWorker::ensureSession(const GenerateRequest& request) {
    if (m_session && m_sessionConversation == request.conversationId)
        return true;
    if (!startSession(request.requestId, request.conversationId))
        return false;
    for (const RoundText& r : request.history) {
        if (inference::Status st = m_session->appendRound(r.user.toStdString(), r.answer.toStdString()); !st) {
            Q_EMIT failed(ErrorInfo{request.requestId, int(st.error().code), qs(st.error().detail)});
            m_session.reset();
            return false;
        }
    }
    return true;
}

void InferenceWorker::restore(const RestoreData& data) {
    if (!m_model || (m_session && m_sessionConversation == data.conversationId))
        return;  // no model yet (the restore is asked again once one is loaded), or the session holds it already
    if (!startSession(data.requestId, data.conversationId))
        return;
    RestoreDone done{data.requestId, data.conversationId, 0, 0, 0, 0, data.reason};
    auto fail = [&](const inference::Error& e) {
        Q_EMIT failed(ErrorInfo{data.requestId, int(e.code), qs(e.detail)});
        m_session.reset();
        m_sessionConversation = 0;
    };
    if (inference::Status st = m_session->prefillSystemPrompt(); !st)
        return fail(st.error());
    // Rounds with stored KV are imported as their snapshots arrive; reading (hundreds of MB for a long chat) runs on
    // reader threads meanwhile. The first round that cannot be imported, and every round after it, is prefilled.
    std::vector<int64_t> ids;
    for (const RestoreData::StoredRound& stored : data.snapshots) ids.push_back(stored.snapshotId);
    const storage::Status streamed = storage::streamSnapshots(
        data.databasePath.toStdString(), ids, kRestoreReaders,
        [&](size_t k, storage::KvSnapshotRecord&& rec) -> storage::Status {
            const RoundText& text = data.rounds[qsizetype(k)];
            inference::RoundInfo info;
            info.index = int(k) + 1;
            info.firstPosition = data.snapshots[qsizetype(k)].firstPosition;
            info.userText = text.user.toStdString();
            info.answerText = text.answer.toStdString();
            inference::RoundKvSnapshot snap{info.index, rec.firstLayer, rec.layerCount, rec.tokenCount,
                                            std::move(rec.modelFingerprint), std::move(rec.dtype), std::move(rec.bytes)};
            RC_TRY(m_session->importRound(info, std::move(snap)));  // e.g. the text renders to other tokens
            ++done.restoredRounds;
            done.restoredTokens += rec.tokenCount;
            return {};
        });
    if (!streamed)
        done.reason = qs(streamed.error().detail);
    for (int k = done.restoredRounds; k < data.rounds.size(); ++k) {
        const RoundText& text = data.rounds[k];
        if (inference::Status st = m_session->appendRound(text.user.toStdString(), text.answer.toStdString()); !st)
            return fail(st.error());
        ++done.recomputedRounds;
    }
    done.prefilledTokens = m_session->contextUsage().usedTokens - done.restoredTokens;
    if (done.recomputedRounds == 0)
        done.reason.clear();
    Q_EMIT restored(done);
}

RoundKv InferenceWorker::exportRound(int round) const {
    RoundKv kv;
    auto snap = m_session->exportRound(round);
    if (!snap) {
        qWarning("KV of round %d not exported: %s", round, snap.error().toString().c_str());
        return kv;
    }
    kv.round = round;
    kv.firstPosition = m_session->rounds()[size_t(round)].firstPosition;
    kv.tokenCount = snap->tokenCount;
    kv.layerCount = snap->layerCount;
    kv.modelFingerprint = qs(snap->modelFingerprint);
    kv.templateHash = qs(m_model->templateHash());
    kv.dtype = qs(snap->dtype);
    kv.bytes = std::make_shared<std::vector<uint8_t>>(std::move(snap->bytes));
    return kv;
}

void InferenceWorker::generate(const GenerateRequest& request) {
    if (cancelled(request.requestId)) {
        // Stopped before it started (Stop, or a switch to another conversation, while an earlier request ran): the
        // GUI still waits for this request's end.
        GenerationDone done;
        done.requestId = request.requestId;
        done.stopReason = StopReason::Cancelled;
        Q_EMIT generationDone(done);
        return;
    }
    if (!m_model) {
        Q_EMIT failed(ErrorInfo{request.requestId, int(inference::ErrorCode::FileNotFound), QStringLiteral("no model")});
        return;
    }
    if (!ensureSession(request))
        return;

    // Keep the session's rounds that match the branch the user sees; drop the rest (a branch switch or an edit).
    const std::vector<inference::RoundInfo>& rounds = m_session->rounds();
    int kept = 0;  // history rounds the session holds
    while (kept < request.history.size() && size_t(kept + 1) < rounds.size() &&
           qs(rounds[size_t(kept + 1)].userText) == request.history[kept].user &&
           qs(rounds[size_t(kept + 1)].answerText) == request.history[kept].answer)
        ++kept;
    const bool sameQuestionNext = size_t(kept + 2) == rounds.size() &&
                                  qs(rounds.back().userText) == request.userText;
    const bool regenerate = request.regenerate && sameQuestionNext && kept == request.history.size();
    if (!regenerate && size_t(kept + 1) < rounds.size()) {
        if (inference::Status st = m_session->truncate(kept + 1); !st) {
            Q_EMIT failed(ErrorInfo{request.requestId, int(st.error().code), qs(st.error().detail)});
            return;
        }
    }
    // History rounds the session lacks (the user switched to a branch it never saw): prefill them from their text.
    for (int k = kept; k < request.history.size(); ++k) {
        const RoundText& r = request.history[k];
        if (inference::Status st = m_session->appendRound(r.user.toStdString(), r.answer.toStdString()); !st) {
            Q_EMIT failed(ErrorInfo{request.requestId, int(st.error().code), qs(st.error().detail)});
            return;
        }
    }

    const quint64 id = request.requestId;
    const inference::TokenCallback onPiece = [this, id](std::string_view piece) {
        Q_EMIT tokenChunk(TokenChunk{id, QString::fromUtf8(piece.data(), qsizetype(piece.size()))});
        return !cancelled(id);
    };
    auto result = regenerate ? m_session->regenerate(onPiece) : m_session->send(request.userText.toStdString(), onPiece);
    if (!result) {
        Q_EMIT failed(ErrorInfo{id, int(result.error().code), qs(result.error().detail)});
        return;
    }
    const inference::GenerationResult& r = *result;
    const inference::ContextUsage usage = m_session->contextUsage();
    GenerationDone done;
    done.requestId = id;
    done.text = qs(r.text);
    done.stopReason = StopReason(int(r.stopReason));
    done.round = int(m_session->rounds().size()) - 1;
    done.promptTokens = r.promptTokens;
    done.usedTokens = usage.usedTokens;
    done.contextLength = usage.contextLength;
    done.tokensPerSecond = r.tokensPerSecond;
    const inference::RecallReport& rep = r.recall;
    done.recall.valid = true;
    done.recall.roundAttention = rep.mode == inference::KvMode::RoundAttention;
    done.recall.roundsTotal = std::max(0, rep.roundsTotal - 1);
    QList<std::pair<int, double>> recalled;
    for (const inference::RecalledRound& rr : rep.recalled)
        if (rr.round > 0)  // round 0 (the system prompt) is always there; the badge names conversation rounds
            recalled.append({rr.round, rr.score});
    std::sort(recalled.begin(), recalled.end());
    for (const auto& [round, score] : recalled) {
        done.recall.recalledRounds.append(round);
        done.recallDetails.scores.append(score);
    }
    done.recall.kvBytesInVram = rep.kvBytesInVram;
    done.recall.kvBytesFull = rep.kvBytesFull;
    done.recall.tokensPerSecond = r.tokensPerSecond;
    done.recallDetails.bytesCopiedFromHost = rep.bytesCopiedFromHost;
    done.recallDetails.selectMs = rep.selectMs;
    done.recallDetails.copyMs = rep.copyMs;
    if (!r.text.empty())  // an empty answer is not kept, so neither is its KV
        done.roundKv = exportRound(done.round);
    Q_EMIT generationDone(done);
    emitMemorySample(rep.kvBytesInVram, rep.bytesCopiedFromHost);
}

void InferenceWorker::emitMemorySample(quint64 kvInVram, quint64 recalledKv) {
    const inference::BackendInfo& b = m_model->backendInfo();
    if (b.kind != inference::BackendKind::Cuda)
        return;  // the GUI samples host memory itself
    ui::MemorySample s;
    s.gpu = true;
    s.deviceName = qs(b.deviceName);
    s.totalBytes = b.deviceTotalBytes;
    s.weightBytes = b.weightBytes;
    s.recalledKvBytes = std::min(recalledKv, kvInVram);
    s.residentKvBytes = kvInVram - s.recalledKvBytes;
    // BackendInfo's free figure is from load time; the KV allocated since then comes off it.
    s.freeBytes = b.deviceFreeBytes > kvInVram ? b.deviceFreeBytes - kvInVram : 0;
    Q_EMIT memorySample(s);
}

}  // namespace app
