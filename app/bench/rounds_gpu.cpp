// roundchat-bench rounds-gpu: the Round Attention KV placement on a long conversation (issue 5) and restoring a
// conversation's KV from SQLite vs prefilling it again (issue 6), as one JSON object on stdout.
//
// The conversation: round 0 (a short system prompt) and rounds-1 rounds of random tokens (question + answer) adding
// up to about `tokens` tokens, then a measured turn: a question (time to first token: prefill + selection + copies
// + first logits) and `gen` greedy decode steps. Full KV and Round Attention each get their own context.
// Random weights give nearly flat round scores, which RoundAttention answers by recalling every round (its flat
// fallback); the benchmark drives the pipeline itself (as round_attention.cpp does) with the fallback off, so the
// selection is the policy's best rounds, as a trained model's peaked scores would give.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "inference/backend.h"
#include "inference/model.h"
#include "inference/round_policy.h"
#include "storage/chat_store.h"
#include "storage/database.h"
#include "storage/kv_store.h"

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using inference::BackendContext;
using inference::KvMode;
using inference::KvView;
using roundchat::Result;
using roundchat::Status;

constexpr int kBatch = 256;              // prefill batch (generation.h kPrefillBatch)
constexpr float kNoFlatFallback = 2.0f;  // a normalised entropy never reaches it

double msSince(Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

struct Options {
    std::string model;
    int rounds = 50;
    int tokens = 16384;
    int question = 128;  // tokens of the measured question
    int gen = 64;
    int watershed = 5;
    int maxRecalled = 4;
    uint64_t budgetBytes = 0;
    std::string db = "/tmp/roundchat-bench-restore.sqlite";
    int restoreThreads = 4;  // SQLite connections reading snapshots at once (the app uses 4)
    inference::BackendKind backend = inference::BackendKind::Cuda;  // cpu: a functional check of the harness
};

struct Conversation {
    std::vector<std::vector<int32_t>> rounds;  // every token of each round
    std::vector<int32_t> question;
};

Conversation makeConversation(const Options& o, int nVocab) {
    std::mt19937_64 rng(42);
    std::uniform_int_distribution<int32_t> tok(3, nVocab - 1);
    Conversation c;
    const int system = 64;
    const int per = std::max(8, (o.tokens - system) / std::max(1, o.rounds - 1));
    for (int r = 0; r < o.rounds; ++r) {
        std::vector<int32_t> round(static_cast<size_t>(r == 0 ? system : per));
        for (int32_t& t : round) t = tok(rng);
        c.rounds.push_back(std::move(round));
    }
    c.question.resize(static_cast<size_t>(o.question));
    for (int32_t& t : c.question) t = tok(rng);
    return c;
}

// One conversation's pipeline: full KV (every layer over every round) or Round Attention (selection at L_w).
class Pipeline {
public:
    Pipeline(BackendContext& ctx, const inference::ModelConfig& c, KvMode mode, const Options& o)
        : m_ctx(ctx), m_c(c), m_mode(mode), m_lw(mode == KvMode::RoundAttention ? o.watershed : c.nLayers) {
        m_policy.mode = mode;
        m_policy.maxRecalledRounds = o.maxRecalled;
        m_policy.vramBudgetBytes = o.budgetBytes;
        m_budget = o.budgetBytes;
    }

    Status setPlacement() { return m_ctx.setPlacement(m_lw, m_budget); }

    // Feeds tokens to the last round; `select` makes the first batch choose the rounds for the upper layers.
    Status feed(std::span<const int32_t> tokens, bool select) {
        for (size_t i = 0; i < tokens.size(); i += kBatch) {
            inference::ForwardBatch b;
            b.tokens = tokens.subspan(i, std::min(tokens.size() - i, static_cast<size_t>(kBatch)));
            const bool choose = select && i == 0 && m_mode == KvMode::RoundAttention;
            b.recordRoundScores = choose;
            RC_TRY(m_ctx.begin(b));
            if (m_lw == m_c.nLayers) {
                RC_TRY(m_ctx.runLayers(0, m_c.nLayers, KvView{}));
                continue;
            }
            RC_TRY(m_ctx.runLayers(0, m_lw, KvView{}));
            if (choose) {
                Result<std::vector<float>> raw = m_ctx.roundScores(m_lw - 1);
                if (!raw)
                    return raw.error();
                m_chosen =
                    inference::selectRounds(inference::normaliseRoundScores(*raw), m_policy, kNoFlatFallback).rounds;
            }
            RC_TRY(m_ctx.runLayers(m_lw, m_c.nLayers, KvView{false, m_chosen}));
        }
        return {};
    }

    Result<int32_t> greedyNext() {
        Result<std::span<const float>> l = m_ctx.logits();
        if (!l)
            return l.error();
        return static_cast<int32_t>(std::max_element(l->begin(), l->end()) - l->begin());
    }

    // The last batch's logits on the host: everything queued has run.
    Status waitLogits() {
        Result<int32_t> t = greedyNext();
        return t ? Status{} : Status{t.error()};
    }

    const std::vector<int>& chosen() const { return m_chosen; }

private:
    BackendContext& m_ctx;
    const inference::ModelConfig& m_c;
    KvMode m_mode;
    int m_lw;
    uint64_t m_budget = 0;
    inference::RoundAttentionOptions m_policy;
    std::vector<int> m_chosen;
};

Status buildHistory(BackendContext& ctx, Pipeline& p, const Conversation& conv) {
    for (const std::vector<int32_t>& round : conv.rounds) {
        RC_TRY(ctx.beginRound());
        RC_TRY(p.feed(round, true));
    }
    return {};
}

// Mode run: history, then the measured turn (TTFT: question + first logits; decode t/s over `gen` steps).
Result<json> runMode(const inference::Model& model, const Conversation& conv, KvMode mode, const Options& o,
                     std::unique_ptr<BackendContext>& keep) {
    const inference::ModelConfig& c = model.config();
    const int capacity = o.tokens + o.question + o.gen + 1024;
    const inference::BackendInfo before = model.backend().info();
    Result<std::unique_ptr<BackendContext>> made = model.backend().createContext(capacity);
    if (!made)
        return made.error();
    BackendContext& ctx = **made;
    Pipeline p(ctx, c, mode, o);
    RC_TRY(p.setPlacement());
    const auto h0 = Clock::now();
    RC_TRY(buildHistory(ctx, p, conv));
    RC_TRY(p.waitLogits());
    const double historyMs = msSince(h0);
    const inference::KvPlacementStats s0 = ctx.placementStats();

    RC_TRY(ctx.beginRound());
    const auto t0 = Clock::now();
    RC_TRY(p.feed(conv.question, true));
    Result<int32_t> next = p.greedyNext();
    if (!next)
        return next.error();
    const double ttftMs = msSince(t0);
    const inference::KvPlacementStats s1 = ctx.placementStats();
    const auto d0 = Clock::now();
    for (int i = 0; i < o.gen; ++i) {
        const int32_t one[1] = {*next};
        RC_TRY(p.feed(one, false));
        next = p.greedyNext();
        if (!next)
            return next.error();
    }
    const double decodeMs = msSince(d0);
    const inference::KvPlacementStats s2 = ctx.placementStats();
    const inference::BackendInfo after = model.backend().info();
    const uint64_t full = ctx.kvBytes(0, c.nLayers);
    json r;
    r["mode"] = mode == KvMode::FullKv ? "full_kv" : "round_attention";
    r["watershed"] = mode == KvMode::FullKv ? c.nLayers : o.watershed;
    r["rounds"] = ctx.rounds().roundCount();
    r["kv_tokens"] = ctx.rounds().tokenCount();
    r["recalled_rounds"] = p.chosen().size();
    r["kv_bytes_in_vram"] = s2.deviceBytes;
    r["kv_bytes_full"] = full;
    r["vram_share"] = full > 0 ? static_cast<double>(s2.deviceBytes) / static_cast<double>(full) : 1.0;
    r["context_device_bytes"] = before.deviceFreeBytes - std::min(before.deviceFreeBytes, after.deviceFreeBytes);
    r["history_prefill_ms"] = historyMs;
    r["ttft_ms"] = ttftMs;
    r["turn_bytes_copied"] = s1.bytesCopiedFromHost - s0.bytesCopiedFromHost;
    r["turn_copy_ms"] = s1.copyMs - s0.copyMs;
    r["decode_tokens"] = o.gen;
    r["decode_tps"] = decodeMs > 0.0 ? 1000.0 * o.gen / decodeMs : 0.0;
    r["decode_bytes_copied"] = s2.bytesCopiedFromHost - s1.bytesCopiedFromHost;
    keep = std::move(*made);
    return r;
}

// Issue 6: the history's KV saved to SQLite (each snapshot in the backend's own dtype, as the app stores it) and
// restored into a fresh context, against prefilling it again. Restore = reading the rounds' snapshots on
// `restoreThreads` connections while importing them in order (storage::streamSnapshots, as the app does). Measured
// for the Round Attention placement (lower layers to VRAM, upper layers kept in the read buffers) and for full KV
// (every layer to VRAM). After the Round Attention restore, the first question's time to first token shows what the
// deferred host copies cost.
Result<json> restoreVsPrefill(const inference::Model& model, BackendContext& source, const Conversation& conv,
                              const Options& o) {
    const inference::ModelConfig& c = model.config();
    std::filesystem::remove(o.db);
    std::filesystem::remove(o.db + "-wal");
    std::filesystem::remove(o.db + "-shm");
    Result<storage::Database> db = storage::Database::open(o.db);
    if (!db)
        return db.error();
    storage::ChatStore chats(*db);
    storage::KvStore kv(*db);
    json out;
    uint64_t storedBytes = 0;
    Result<int64_t> cid = chats.createConversation(storage::Conversation{.title = "bench"});
    if (!cid)
        return cid.error();
    int64_t parent = 0;
    for (int r = 0; r < static_cast<int>(conv.rounds.size()); ++r) {
        Result<inference::RoundKvSnapshot> snap = source.exportRound(r, 0, c.nLayers);
        if (!snap)
            return snap.error();
        out["snapshot_dtype"] = snap->dtype;
        storage::KvSnapshotRecord rec{r, 0, c.nLayers, snap->tokenCount, "", snap->dtype, "", std::move(snap->bytes)};
        storedBytes += rec.bytes.size();
        int64_t ids[2] = {0, 0};
        for (int m = 0; m < 2; ++m) {
            storage::Message msg;
            msg.conversationId = *cid;
            msg.parentId = parent;
            msg.role = m == 0 ? storage::Role::User : storage::Role::Assistant;
            msg.text = "round " + std::to_string(r);
            Result<int64_t> id = chats.appendMessage(msg);
            if (!id)
                return id.error();
            ids[m] = parent = *id;
        }
        const storage::RoundRecord round{0,      *cid, r, ids[0], ids[1], source.rounds().round(r).firstPosition,
                                         rec.tokenCount, 0};
        const storage::KvSnapshotRecord one[1] = {std::move(rec)};
        Result<int64_t> rid = kv.writeRound(round, one);
        if (!rid)
            return rid.error();
    }
    out["stored_bytes"] = storedBytes;
    out["threads"] = o.restoreThreads;

    for (const bool roundPlacement : {true, false}) {
        Result<std::unique_ptr<BackendContext>> ctx = model.backend().createContext(o.tokens + 2048);
        if (!ctx)
            return ctx.error();
        const int watershed = roundPlacement ? o.watershed : c.nLayers;
        RC_TRY((*ctx)->setPlacement(watershed, o.budgetBytes));
        const auto t0 = Clock::now();
        Result<std::vector<storage::RoundRecord>> rounds = kv.rounds(*cid);
        if (!rounds)
            return rounds.error();
        std::vector<int64_t> ids;
        for (const storage::RoundRecord& round : *rounds) {
            Result<std::vector<storage::KvSnapshotInfo>> infos = kv.snapshots(round.id);
            if (!infos || infos->size() != 1)
                return roundchat::makeError(roundchat::ErrorCode::CorruptFile, "expected one snapshot per round");
            ids.push_back(infos->front().id);
        }
        double importMs = 0.0;  // of which importing (device copies included), overlapped with the reads
        RC_TRY(storage::streamSnapshots(
            o.db, ids, o.restoreThreads, [&](size_t i, storage::KvSnapshotRecord&& rec) -> Status {
                const auto i0 = Clock::now();
                inference::RoundKvSnapshot snap{rec.round, rec.firstLayer, rec.layerCount, rec.tokenCount,
                                                "",        rec.dtype,      std::move(rec.bytes)};
                Status st = (*ctx)->importRound(std::move(snap), (*rounds)[i].firstPosition);
                importMs += msSince(i0);
                return st;
            }));
        const double ms = msSince(t0);  // importRound returns with the device copies done
        Pipeline p(**ctx, c, roundPlacement ? KvMode::RoundAttention : KvMode::FullKv, o);
        json r = {{"ms", ms}, {"import_ms", importMs}, {"watershed", watershed}};
        if (roundPlacement) {
            RC_TRY((*ctx)->beginRound());
            const auto q0 = Clock::now();
            RC_TRY(p.feed(conv.question, true));
            RC_TRY(p.waitLogits());
            r["first_question_ttft_ms"] = msSince(q0);
            r["first_question_recalled_rounds"] = p.chosen().size();
        }
        out[roundPlacement ? "restore_round_attention" : "restore_full_kv"] = std::move(r);
    }

    // Re-prefill: the same tokens through every layer (full KV), until the last logits are on the host.
    Result<std::unique_ptr<BackendContext>> ctx = model.backend().createContext(o.tokens + 2048);
    if (!ctx)
        return ctx.error();
    Pipeline full(**ctx, c, KvMode::FullKv, o);
    const auto t0 = Clock::now();
    RC_TRY(buildHistory(**ctx, full, conv));
    RC_TRY(full.waitLogits());
    const double prefillMs = msSince(t0);
    out["reprefill_ms"] = prefillMs;
    for (const char* k : {"restore_round_attention", "restore_full_kv"})
        out[k]["share_of_reprefill"] = out[k]["ms"].get<double>() / prefillMs;
    return out;
}

int fail(const roundchat::Error& e) {
    std::fprintf(stderr, "roundchat-bench rounds-gpu: %s\n", e.toString().c_str());
    return 1;
}

}  // namespace

// argv: the arguments after "rounds-gpu".
int runRoundsGpu(int argc, char** argv) {
    Options o;
    for (int i = 0; i + 1 < argc; i += 2) {
        const std::string_view k = argv[i];
        const std::string v = argv[i + 1];
        if (k == "-m")
            o.model = v;
        else if (k == "--rounds")
            o.rounds = std::stoi(v);
        else if (k == "--tokens")
            o.tokens = std::stoi(v);
        else if (k == "--question")
            o.question = std::stoi(v);
        else if (k == "--gen")
            o.gen = std::stoi(v);
        else if (k == "--watershed")
            o.watershed = std::stoi(v);
        else if (k == "--max-recalled")
            o.maxRecalled = std::stoi(v);
        else if (k == "--budget-mb")
            o.budgetBytes = std::stoull(v) << 20;
        else if (k == "--db")
            o.db = v;
        else if (k == "--restore-threads")
            o.restoreThreads = std::stoi(v);
        else if (k == "--backend" && (v == "cuda" || v == "cpu"))
            o.backend = v == "cpu" ? inference::BackendKind::Cpu : inference::BackendKind::Cuda;
        else {
            std::fprintf(stderr, "rounds-gpu: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (o.model.empty() || argc % 2 != 0) {
        std::fputs(
            "usage: roundchat-bench rounds-gpu -m MODEL.gguf [--rounds 50] [--tokens 16384] [--question 128] "
            "[--gen 64] [--watershed 5] [--max-recalled 4] [--budget-mb 0] [--db PATH] [--restore-threads 4] "
            "[--backend cuda|cpu]\n",
            stderr);
        return 2;
    }
    inference::LoadOptions load;
    load.backend = o.backend;
    load.contextLength = o.tokens + o.question + o.gen + 2048;
    Result<std::unique_ptr<inference::Model>> model = inference::Model::load(o.model, load);
    if (!model)
        return fail(model.error());
    if (o.backend == inference::BackendKind::Cuda && !(*model)->backendInfo().fallbackReason.empty())
        return fail(roundchat::Error{roundchat::ErrorCode::NoGpu, (*model)->backendInfo().fallbackReason});
    const Conversation conv = makeConversation(o, (*model)->config().nVocab);
    json out;
    out["model"] = o.model;
    out["device"] = (*model)->backendInfo().deviceName;
    std::unique_ptr<BackendContext> fullCtx, roundCtx;
    for (KvMode mode : {KvMode::FullKv, KvMode::RoundAttention}) {
        Result<json> r = runMode(**model, conv, mode, o, mode == KvMode::FullKv ? fullCtx : roundCtx);
        if (!r)
            return fail(r.error());
        out[mode == KvMode::FullKv ? "full_kv" : "round_attention"] = std::move(*r);
        // Keep one context at a time on the device: the restore below needs room.
        if (mode == KvMode::RoundAttention)
            roundCtx.reset();
    }
    const json& f = out["full_kv"];
    const json& ra = out["round_attention"];
    out["targets"] = {
        {"vram_share", ra["vram_share"]},
        {"vram_share_ok", ra["vram_share"].get<double>() <= 0.45},
        {"decode_ratio", ra["decode_tps"].get<double>() / f["decode_tps"].get<double>()},
        {"decode_ok", ra["decode_tps"].get<double>() >= f["decode_tps"].get<double>()},
        {"ttft_ratio", ra["ttft_ms"].get<double>() / f["ttft_ms"].get<double>()},
        {"ttft_ok", ra["ttft_ms"].get<double>() <= 1.1 * f["ttft_ms"].get<double>()},
    };
    // The full-KV context still holds the history; rounds 0..rounds-1 (the measured turn dropped).
    if (Status st = fullCtx->keepRounds(o.rounds); !st)
        return fail(st.error());
    Result<json> restore = restoreVsPrefill(**model, *fullCtx, conv, o);
    if (!restore)
        return fail(restore.error());
    (*restore)["target_ok"] = (*restore)["restore_round_attention"]["share_of_reprefill"].get<double>() <= 0.2;
    out["restore"] = std::move(*restore);
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
}
