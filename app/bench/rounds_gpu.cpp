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
#include <cstring>
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
#include "kernels/ggml_types.h"
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

// Issue 6: the history's KV saved to SQLite and restored into a fresh context, against prefilling it again.
Result<json> restoreVsPrefill(const inference::Model& model, BackendContext& source, const Conversation& conv,
                              const Options& o) {
    const inference::ModelConfig& c = model.config();
    const int history = static_cast<int>(conv.rounds.size());
    std::filesystem::remove(o.db);
    std::filesystem::remove(o.db + "-wal");
    std::filesystem::remove(o.db + "-shm");
    Result<storage::Database> db = storage::Database::open(o.db);
    if (!db)
        return db.error();
    storage::ChatStore chats(*db);
    storage::KvStore kv(*db);
    json out;
    uint64_t storedBytes[2] = {0, 0};
    int64_t conversations[2] = {0, 0};
    // f16 snapshots: the CUDA backend imports them as they are; the CPU backend takes f32 only.
    const int variants = model.backendInfo().kind == inference::BackendKind::Cuda ? 2 : 1;
    for (int f16 = 0; f16 < variants; ++f16) {
        storage::Conversation conversation;
        conversation.title = f16 ? "bench f16" : "bench f32";
        Result<int64_t> cid = chats.createConversation(conversation);
        if (!cid)
            return cid.error();
        conversations[f16] = *cid;
        int64_t parent = 0;
        for (int r = 0; r < history; ++r) {
            Result<inference::RoundKvSnapshot> snap = source.exportRound(r, 0, c.nLayers);
            if (!snap)
                return snap.error();
            storage::KvSnapshotRecord rec;
            rec.round = r;
            rec.firstLayer = 0;
            rec.layerCount = c.nLayers;
            rec.tokenCount = snap->tokenCount;
            rec.dtype = f16 ? "f16" : "f32";
            if (f16) {  // the device's own encoding: half the bytes, no conversion on import
                rec.bytes.resize(snap->bytes.size() / 2);
                for (size_t i = 0; i < rec.bytes.size() / 2; ++i) {
                    float f;
                    std::memcpy(&f, snap->bytes.data() + 4 * i, 4);
                    const uint16_t h = kernels::floatToFp16(f);
                    std::memcpy(rec.bytes.data() + 2 * i, &h, 2);
                }
            } else {
                rec.bytes = std::move(snap->bytes);
            }
            storedBytes[f16] += rec.bytes.size();
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
            storage::RoundRecord round;
            round.conversationId = *cid;
            round.roundIndex = r;
            round.userMessageId = ids[0];
            round.assistantMessageId = ids[1];
            round.firstPosition = source.rounds().round(r).firstPosition;
            round.tokenCount = snap->tokenCount;
            const storage::KvSnapshotRecord one[1] = {std::move(rec)};
            Result<int64_t> rid = kv.writeRound(round, one);
            if (!rid)
                return rid.error();
        }
    }

    // Restore: read every round's snapshot from SQLite and import it (Round Attention placement: lower layers to
    // VRAM, upper layers to pinned host memory), ready for the next question.
    for (int f16 = 0; f16 < variants; ++f16) {
        Result<std::unique_ptr<BackendContext>> ctx = model.backend().createContext(o.tokens + 2048);
        if (!ctx)
            return ctx.error();
        RC_TRY((*ctx)->setPlacement(o.watershed, o.budgetBytes));
        const auto t0 = Clock::now();
        Result<std::vector<storage::RoundRecord>> rounds = kv.rounds(conversations[f16]);
        if (!rounds)
            return rounds.error();
        for (const storage::RoundRecord& round : *rounds) {
            Result<std::vector<storage::KvSnapshotInfo>> infos = kv.snapshots(round.id);
            if (!infos || infos->size() != 1)
                return roundchat::makeError(roundchat::ErrorCode::CorruptFile, "expected one snapshot per round");
            Result<storage::KvSnapshotRecord> rec = kv.loadSnapshot(infos->front().id);
            if (!rec)
                return rec.error();
            inference::RoundKvSnapshot snap;
            snap.round = rec->round;
            snap.firstLayer = rec->firstLayer;
            snap.layerCount = rec->layerCount;
            snap.tokenCount = rec->tokenCount;
            snap.dtype = rec->dtype;
            snap.bytes = std::move(rec->bytes);
            RC_TRY((*ctx)->importRound(snap, round.firstPosition));
        }
        const double ms = msSince(t0);
        out[f16 ? "restore_f16" : "restore_f32"] = {
            {"ms", ms}, {"stored_bytes", storedBytes[f16]}, {"rounds", (*ctx)->rounds().roundCount()}};
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
    out["restore_f32_share"] = out["restore_f32"]["ms"].get<double>() / prefillMs;
    if (variants == 2)
        out["restore_f16_share"] = out["restore_f16"]["ms"].get<double>() / prefillMs;
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
            "[--gen 64] [--watershed 5] [--max-recalled 4] [--budget-mb 0] [--db PATH] [--backend cuda|cpu]\n",
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
    (*restore)["target_ok"] = (*restore)["restore_f32_share"].get<double>() <= 0.2;
    out["restore"] = std::move(*restore);
    std::printf("%s\n", out.dump(2).c_str());
    return 0;
}
