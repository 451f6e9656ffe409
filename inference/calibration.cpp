// Watershed calibration: per-layer round distributions with full KV, the choice of L_w, and its JSON file.
#include "inference/calibration.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <utility>

#include "backend.h"
#include "generation.h"
#include "inference/kv_sharing.h"

namespace inference {

Result<std::vector<CalibrationSample>> collectCalibrationSamples(const Model& model,
                                                                std::span<const TokenConversation> conversations,
                                                                int minPastRounds) {
    const int nLayers = model.config().nLayers;
    std::vector<CalibrationSample> samples;
    for (const TokenConversation& conv : conversations) {
        int capacity = 0;
        for (const TokenRound& r : conv)
            capacity += static_cast<int>(r.question.size() + r.answer.size());
        if (capacity == 0)
            continue;
        Result<std::unique_ptr<BackendContext>> ctx = model.backend().createContext(capacity);
        if (!ctx)
            return ctx.error();
        BackendContext& c = **ctx;
        for (size_t k = 0; k < conv.size(); ++k) {
            RC_TRY(c.beginRound());
            const bool sample = static_cast<int>(k) >= minPastRounds && !conv[k].question.empty();
            if (sample) {
                // The question in one batch, recording every layer's round scores (the selection point).
                ForwardBatch batch;
                batch.tokens = conv[k].question;
                batch.recordRoundScores = true;
                RC_TRY(forwardAll(c, batch, nLayers));
                CalibrationSample s;
                for (int l = 0; l < nLayers; ++l) {
                    Result<std::vector<float>> raw = c.roundScores(l);
                    if (!raw)
                        return raw.error();
                    s.layerShares.push_back(normaliseRoundScores(*raw));
                }
                samples.push_back(std::move(s));
            } else {
                RC_TRY(prefill(c, conv[k].question, nLayers, false));
            }
            RC_TRY(prefill(c, conv[k].answer, nLayers, false));
        }
    }
    return samples;
}

Result<CalibrationResult> calibrateWatershed(const Model& model, std::span<const TokenConversation> conversations,
                                             const CalibrationOptions& options) {
    Result<std::vector<CalibrationSample>> samples =
        collectCalibrationSamples(model, conversations, options.minPastRounds);
    if (!samples)
        return samples.error();
    if (samples->empty())
        return makeError(ErrorCode::InvalidArgument, "no calibration conversation has " +
                                                         std::to_string(options.minPastRounds) + " past rounds");
    return chooseWatershed(*samples, model.config().nLayers, options.selection, options.minCoverage);
}

Result<TokenConversation> tokenizeConversation(const Tokenizer& tokenizer, std::span<const TextRound> rounds) {
    TokenConversation conv;
    for (size_t k = 0; k < rounds.size(); ++k) {
        TokenRound r;
        Result<std::vector<int32_t>> q = tokenizer.encode(rounds[k].question, EncodeOptions{k == 0, false});
        if (!q)
            return q.error();
        r.question = std::move(*q);
        if (!rounds[k].answer.empty()) {
            Result<std::vector<int32_t>> a = tokenizer.encode(rounds[k].answer, EncodeOptions{false, false});
            if (!a)
                return a.error();
            r.answer = std::move(*a);
        }
        conv.push_back(std::move(r));
    }
    return conv;
}

// ---- JSON file ----

namespace {

// The subset of JSON the calibration file uses: objects, arrays, numbers, booleans and plain strings.
struct JsonValue {
    enum class Kind { Null, Bool, Number, String, Array, Object } kind = Kind::Null;
    double number = 0.0;
    bool boolean = false;
    std::string string;
    std::vector<JsonValue> array;
    std::vector<std::pair<std::string, JsonValue>> object;

    const JsonValue* find(const std::string& key) const {
        for (const auto& [k, v] : object)
            if (k == key)
                return &v;
        return nullptr;
    }
};

class JsonReader {
public:
    explicit JsonReader(const std::string& text) : m_s(text) {}

    bool parse(JsonValue& out) {
        if (!value(out, 0))
            return false;
        skipSpace();
        return m_i == m_s.size();
    }

private:
    static constexpr int kMaxDepth = 8;

    void skipSpace() {
        while (m_i < m_s.size() && std::isspace(static_cast<unsigned char>(m_s[m_i])))
            ++m_i;
    }
    bool eat(char c) {
        skipSpace();
        if (m_i < m_s.size() && m_s[m_i] == c) {
            ++m_i;
            return true;
        }
        return false;
    }
    bool literal(const char* word) {
        const std::string w(word);
        if (m_s.compare(m_i, w.size(), w) != 0)
            return false;
        m_i += w.size();
        return true;
    }
    bool string(std::string& out) {
        if (!eat('"'))
            return false;
        while (m_i < m_s.size() && m_s[m_i] != '"') {
            if (m_s[m_i] == '\\')
                return false;  // never written: fingerprints and keys are plain
            out += m_s[m_i++];
        }
        return eat('"');
    }
    bool value(JsonValue& v, int depth) {
        if (depth > kMaxDepth)
            return false;
        skipSpace();
        if (m_i >= m_s.size())
            return false;
        const char c = m_s[m_i];
        if (c == '{') {
            v.kind = JsonValue::Kind::Object;
            ++m_i;
            if (eat('}'))
                return true;
            do {
                std::pair<std::string, JsonValue> kv;
                if (!string(kv.first) || !eat(':') || !value(kv.second, depth + 1))
                    return false;
                v.object.push_back(std::move(kv));
            } while (eat(','));
            return eat('}');
        }
        if (c == '[') {
            v.kind = JsonValue::Kind::Array;
            ++m_i;
            if (eat(']'))
                return true;
            do {
                v.array.emplace_back();
                if (!value(v.array.back(), depth + 1))
                    return false;
            } while (eat(','));
            return eat(']');
        }
        if (c == '"') {
            v.kind = JsonValue::Kind::String;
            return string(v.string);
        }
        if (literal("true") || literal("false")) {
            v.kind = JsonValue::Kind::Bool;
            v.boolean = c == 't';
            return true;
        }
        v.kind = JsonValue::Kind::Number;
        const char* begin = m_s.c_str() + m_i;
        char* end = nullptr;
        v.number = std::strtod(begin, &end);
        if (end == begin)
            return false;
        m_i += static_cast<size_t>(end - begin);
        return true;
    }

    const std::string& m_s;
    size_t m_i = 0;
};

bool safeId(const std::string& id) {
    if (id.empty() || id == "." || id == "..")
        return false;
    for (char c : id)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
            return false;
    return true;
}

std::string number(double v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.6g", v);
    return buf;
}

}  // namespace

std::string calibrationToJson(const CalibrationResult& r, const std::string& fingerprint) {
    std::ostringstream out;
    out << "{\n  \"fingerprint\": \"" << fingerprint << "\",\n  \"n_layers\": " << r.nLayers
        << ",\n  \"watershed_layer\": " << r.watershedLayer << ",\n  \"reference_first_layer\": "
        << r.referenceFirstLayer << ",\n  \"min_coverage\": " << number(r.minCoverage)
        << ",\n  \"criterion_met\": " << (r.criterionMet ? "true" : "false") << ",\n  \"samples\": " << r.samples
        << ",\n  \"layers\": [";
    for (size_t i = 0; i < r.layers.size(); ++i) {
        const LayerCalibration& l = r.layers[i];
        out << (i ? ",\n" : "\n") << "    {\"layer\": " << l.layer << ", \"mean_coverage\": " << number(l.meanCoverage)
            << ", \"min_coverage\": " << number(l.minCoverage) << ", \"mean_js\": " << number(l.meanJs) << "}";
    }
    out << "\n  ]\n}\n";
    return out.str();
}

Result<CalibrationResult> calibrationFromJson(const std::string& json, const std::string& fingerprint) {
    JsonValue root;
    if (!JsonReader(json).parse(root) || root.kind != JsonValue::Kind::Object)
        return makeError(ErrorCode::CorruptFile, "calibration file is not a JSON object");
    auto num = [&](const JsonValue& obj, const char* key, double& out) {
        const JsonValue* v = obj.find(key);
        if (!v || v->kind != JsonValue::Kind::Number)
            return false;
        out = v->number;
        return true;
    };
    const JsonValue* fp = root.find("fingerprint");
    if (!fp || fp->kind != JsonValue::Kind::String)
        return makeError(ErrorCode::CorruptFile, "calibration file has no fingerprint");
    if (fp->string != fingerprint)
        return makeError(ErrorCode::Mismatch, "calibration was made for model " + fp->string);
    CalibrationResult r;
    double nLayers = 0, watershed = 0, refFirst = 0, minCov = 0, samples = 0;
    const JsonValue* met = root.find("criterion_met");
    const JsonValue* layers = root.find("layers");
    if (!num(root, "n_layers", nLayers) || !num(root, "watershed_layer", watershed) ||
        !num(root, "reference_first_layer", refFirst) || !num(root, "min_coverage", minCov) ||
        !num(root, "samples", samples) || !met || met->kind != JsonValue::Kind::Bool || !layers ||
        layers->kind != JsonValue::Kind::Array)
        return makeError(ErrorCode::CorruptFile, "calibration file lacks a required field");
    r.nLayers = static_cast<int>(nLayers);
    r.watershedLayer = static_cast<int>(watershed);
    r.referenceFirstLayer = static_cast<int>(refFirst);
    r.minCoverage = static_cast<float>(minCov);
    r.samples = static_cast<int>(samples);
    r.criterionMet = met->boolean;
    if (r.nLayers < 1 || r.watershedLayer < 1 || r.watershedLayer > r.nLayers ||
        static_cast<int>(layers->array.size()) != r.nLayers)
        return makeError(ErrorCode::CorruptFile, "calibration file has inconsistent layer counts");
    for (const JsonValue& l : layers->array) {
        double layer = 0, mean = 0, mn = 0, js = 0;
        if (l.kind != JsonValue::Kind::Object || !num(l, "layer", layer) || !num(l, "mean_coverage", mean) ||
            !num(l, "min_coverage", mn) || !num(l, "mean_js", js))
            return makeError(ErrorCode::CorruptFile, "calibration file has a malformed layer entry");
        r.layers.push_back(LayerCalibration{static_cast<int>(layer), static_cast<float>(mean), static_cast<float>(mn),
                                            static_cast<float>(js)});
    }
    return r;
}

namespace {

// Writes <directory>/<fingerprint><suffix> through a temporary file renamed over it (replaces an older one atomically).
Status writeCalibrationFile(const std::string& directory, const std::string& fingerprint, const char* suffix,
                            const std::string& text) {
    if (!safeId(fingerprint))
        return makeError(ErrorCode::InvalidArgument, "model fingerprint '" + fingerprint + "' is not a file name");
    std::error_code ec;
    std::filesystem::create_directories(directory, ec);
    if (ec)
        return makeError(ErrorCode::IoError, "cannot create " + directory + ": " + ec.message());
    const std::filesystem::path path = std::filesystem::path(directory) / (fingerprint + suffix);
    const std::filesystem::path tmp = std::filesystem::path(directory) / (fingerprint + suffix + ".tmp");
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << text;
        if (!out.flush())
            return makeError(ErrorCode::IoError, "cannot write " + tmp.string());
    }
    std::filesystem::rename(tmp, path, ec);
    if (ec)
        return makeError(ErrorCode::IoError, "cannot rename to " + path.string() + ": " + ec.message());
    return {};
}

Result<std::string> readCalibrationFile(const std::string& directory, const std::string& fingerprint,
                                        const char* suffix) {
    if (!safeId(fingerprint))
        return makeError(ErrorCode::InvalidArgument, "model fingerprint '" + fingerprint + "' is not a file name");
    const std::filesystem::path path = std::filesystem::path(directory) / (fingerprint + suffix);
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return makeError(ErrorCode::FileNotFound, "no calibration at " + path.string());
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

constexpr const char* kWatershedSuffix = ".json";
constexpr const char* kSharingSuffix = ".kv_sharing.json";

}  // namespace

Status saveCalibration(const std::string& directory, const std::string& fingerprint, const CalibrationResult& result) {
    return writeCalibrationFile(directory, fingerprint, kWatershedSuffix, calibrationToJson(result, fingerprint));
}

Result<CalibrationResult> loadCalibration(const std::string& directory, const std::string& fingerprint) {
    Result<std::string> text = readCalibrationFile(directory, fingerprint, kWatershedSuffix);
    if (!text)
        return text.error();
    return calibrationFromJson(*text, fingerprint);
}

// ---- layer groups for inter-layer KV sharing ----

std::vector<float> layerJsMatrix(std::span<const std::vector<std::vector<float>>> distributions) {
    const size_t nLayers = distributions.size();
    std::vector<float> js(nLayers * nLayers, 0.0f);
    if (nLayers == 0)
        return js;
    const size_t count = distributions[0].size();
    const double ln2 = std::log(2.0);
    for (size_t a = 0; a < nLayers; ++a) {
        for (size_t b = a + 1; b < nLayers; ++b) {
            double sum = 0.0;
            int n = 0;
            for (size_t i = 0; i < count; ++i) {
                const std::vector<float>& p = distributions[a][i];
                const std::vector<float>& q = distributions[b][i];
                if (p.empty() || p.size() != q.size())
                    continue;
                sum += jensenShannon(p, q) / ln2;
                ++n;
            }
            js[a * nLayers + b] = js[b * nLayers + a] = n > 0 ? static_cast<float>(sum / n) : 0.0f;
        }
    }
    return js;
}

std::vector<int> chooseLayerGroups(std::span<const float> js, int nLayers, float maxJs) {
    std::vector<int> starts;
    for (int l = 0; l < nLayers; ++l)
        if (starts.empty() || js[static_cast<size_t>(starts.back()) * nLayers + l] > maxJs)
            starts.push_back(l);
    return starts;
}

Result<KvSharingCalibration> calibrateKvSharing(const Model& model, std::span<const TokenConversation> conversations,
                                                const KvSharingCalibrationOptions& options) {
    const int nLayers = model.config().nLayers;
    KvSharingOptions measure;  // every layer its own group: full attention, split into proximal and distant keys
    measure.sinkTokens = options.sinkTokens;
    measure.windowTokens = options.windowTokens;
    Result<KvSharingPlan> plan = makeKvSharingPlan(measure, nLayers);
    if (!plan)
        return plan.error();
    plan->recordQueries = options.queries;
    std::vector<std::vector<std::vector<float>>> distributions(static_cast<size_t>(nLayers));
    for (const TokenConversation& conv : conversations) {
        std::vector<int32_t> tokens;  // rounds are contiguous in position: the tail of the last round is measured
        int lastRoundStart = 0;
        for (const TokenRound& r : conv) {
            lastRoundStart = static_cast<int>(tokens.size());
            tokens.insert(tokens.end(), r.question.begin(), r.question.end());
            tokens.insert(tokens.end(), r.answer.begin(), r.answer.end());
        }
        const int tail = std::min(options.queries, static_cast<int>(tokens.size()) - lastRoundStart);
        if (tail <= 0)
            continue;
        Result<std::unique_ptr<BackendContext>> ctx = model.backend().createContext(static_cast<int>(tokens.size()));
        if (!ctx)
            return ctx.error();
        BackendContext& c = **ctx;
        size_t at = 0;
        for (const TokenRound& r : conv) {
            RC_TRY(c.beginRound());
            const size_t end = at + r.question.size() + r.answer.size();
            const size_t measured = std::min(end, std::max(at, tokens.size() - static_cast<size_t>(tail)));
            RC_TRY(prefill(c, std::span(tokens).subspan(at, measured - at), nLayers, false));
            at = measured;
            if (end == tokens.size()) {
                ForwardBatch batch;
                batch.tokens = std::span(tokens).subspan(at, end - at);
                batch.sharing = &*plan;
                RC_TRY(forwardAll(c, batch, nLayers));
                for (int l = 0; l < nLayers; ++l) {
                    Result<std::vector<std::vector<float>>> d = c.distantAttention(l);
                    if (!d)
                        return d.error();
                    for (std::vector<float>& p : *d) distributions[static_cast<size_t>(l)].push_back(std::move(p));
                }
            }
            at = end;
        }
    }
    KvSharingCalibration cal;
    for (const std::vector<float>& p : distributions[0]) cal.samples += p.empty() ? 0 : 1;
    if (cal.samples == 0)
        return makeError(ErrorCode::InvalidArgument, "no calibration query has distant tokens (sink " +
                                                         std::to_string(options.sinkTokens) + ", window " +
                                                         std::to_string(options.windowTokens) + " tokens)");
    cal.nLayers = nLayers;
    cal.sinkTokens = options.sinkTokens;
    cal.windowTokens = options.windowTokens;
    cal.maxJs = options.maxJs;
    cal.js = layerJsMatrix(distributions);
    cal.groupStarts = chooseLayerGroups(cal.js, nLayers, options.maxJs);
    return cal;
}

std::string kvSharingToJson(const KvSharingCalibration& c, const std::string& fingerprint) {
    std::ostringstream out;
    out << "{\n  \"fingerprint\": \"" << fingerprint << "\",\n  \"n_layers\": " << c.nLayers
        << ",\n  \"sink_tokens\": " << c.sinkTokens << ",\n  \"window_tokens\": " << c.windowTokens
        << ",\n  \"max_js\": " << number(c.maxJs) << ",\n  \"samples\": " << c.samples << ",\n  \"group_starts\": [";
    for (size_t i = 0; i < c.groupStarts.size(); ++i) out << (i ? ", " : "") << c.groupStarts[i];
    out << "],\n  \"js\": [";
    for (int a = 0; a < c.nLayers; ++a) {
        out << (a ? ",\n    [" : "\n    [");
        for (int b = 0; b < c.nLayers; ++b)
            out << (b ? ", " : "") << number(c.js[static_cast<size_t>(a) * c.nLayers + b]);
        out << "]";
    }
    out << "\n  ]\n}\n";
    return out.str();
}

Result<KvSharingCalibration> kvSharingFromJson(const std::string& json, const std::string& fingerprint) {
    JsonValue root;
    if (!JsonReader(json).parse(root) || root.kind != JsonValue::Kind::Object)
        return makeError(ErrorCode::CorruptFile, "KV sharing calibration is not a JSON object");
    const JsonValue* fp = root.find("fingerprint");
    if (!fp || fp->kind != JsonValue::Kind::String)
        return makeError(ErrorCode::CorruptFile, "KV sharing calibration has no fingerprint");
    if (fp->string != fingerprint)
        return makeError(ErrorCode::Mismatch, "KV sharing calibration was made for model " + fp->string);
    auto num = [](const JsonValue* v, double& out) {
        if (!v || v->kind != JsonValue::Kind::Number)
            return false;
        out = v->number;
        return true;
    };
    double nLayers = 0, sink = 0, window = 0, maxJs = 0, samples = 0;
    const JsonValue* starts = root.find("group_starts");
    const JsonValue* js = root.find("js");
    if (!num(root.find("n_layers"), nLayers) || !num(root.find("sink_tokens"), sink) ||
        !num(root.find("window_tokens"), window) || !num(root.find("max_js"), maxJs) ||
        !num(root.find("samples"), samples) || !starts || starts->kind != JsonValue::Kind::Array || !js ||
        js->kind != JsonValue::Kind::Array)
        return makeError(ErrorCode::CorruptFile, "KV sharing calibration lacks a required field");
    KvSharingCalibration c;
    c.nLayers = static_cast<int>(nLayers);
    c.sinkTokens = static_cast<int>(sink);
    c.windowTokens = static_cast<int>(window);
    c.maxJs = static_cast<float>(maxJs);
    c.samples = static_cast<int>(samples);
    if (c.nLayers < 1 || static_cast<int>(js->array.size()) != c.nLayers)
        return makeError(ErrorCode::CorruptFile, "KV sharing calibration has inconsistent layer counts");
    for (const JsonValue& s : starts->array) {
        double v = 0;
        if (!num(&s, v))
            return makeError(ErrorCode::CorruptFile, "KV sharing calibration has a malformed group start");
        c.groupStarts.push_back(static_cast<int>(v));
    }
    for (const JsonValue& row : js->array) {
        if (row.kind != JsonValue::Kind::Array || static_cast<int>(row.array.size()) != c.nLayers)
            return makeError(ErrorCode::CorruptFile, "KV sharing calibration has a malformed JS row");
        for (const JsonValue& v : row.array) {
            double x = 0;
            if (!num(&v, x))
                return makeError(ErrorCode::CorruptFile, "KV sharing calibration has a malformed JS value");
            c.js.push_back(static_cast<float>(x));
        }
    }
    KvSharingOptions check;
    check.groupStarts = c.groupStarts;
    if (!makeKvSharingPlan(check, c.nLayers))
        return makeError(ErrorCode::CorruptFile, "KV sharing calibration has invalid layer groups");
    return c;
}

Status saveKvSharingCalibration(const std::string& directory, const std::string& fingerprint,
                                const KvSharingCalibration& calibration) {
    return writeCalibrationFile(directory, fingerprint, kSharingSuffix, kvSharingToJson(calibration, fingerprint));
}

Result<KvSharingCalibration> loadKvSharingCalibration(const std::string& directory, const std::string& fingerprint) {
    Result<std::string> text = readCalibrationFile(directory, fingerprint, kSharingSuffix);
    if (!text)
        return text.error();
    return kvSharingFromJson(*text, fingerprint);
}

}  // namespace inference
