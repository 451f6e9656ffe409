// Chat templates: a renderer for the Jinja subset that Hugging Face chat templates (tokenizer.chat_template in a
// GGUF) use, matching jinja2's ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
// extensions=["jinja2.ext.loopcontrols"]) with transformers' globals raise_exception() and strftime_now() and its
// tojson filter (json.dumps with ensure_ascii=False).
// Ownership: ChatTemplate is an immutable value; copies share the parsed program. Threading: every const member may
// be called from any thread at the same time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "roundchat/result.h"

namespace inference {

using roundchat::Error;
using roundchat::ErrorCode;
using roundchat::Result;
using roundchat::Status;

namespace jinja {
struct Program;
struct Callable;
}  // namespace jinja

// A template value with Python semantics: undefined, none, bool, int, float, string (UTF-8), list and map (string
// keys, insertion ordered). Lists and maps are shared by reference like Python objects: copying a Value copies the
// handle, and set()/append() are seen through every copy.
class Value {
public:
    enum class Type : std::uint8_t { Undefined, None, Bool, Int, Float, String, List, Map, Callable };
    using Entries = std::vector<std::pair<std::string, Value>>;

    Value() = default;  // undefined
    Value(std::nullptr_t) : m_v(nullptr) {}
    Value(bool v) : m_v(v) {}
    Value(int v) : m_v(std::int64_t{v}) {}
    Value(std::int64_t v) : m_v(v) {}
    Value(double v) : m_v(v) {}
    Value(std::string v) : m_v(std::move(v)) {}
    Value(std::string_view v) : m_v(std::string(v)) {}
    Value(const char* v) : m_v(std::string(v)) {}

    static Value list(std::vector<Value> items = {});
    static Value map(Entries entries = {});

    Type type() const { return static_cast<Type>(m_v.index()); }
    bool isUndefined() const { return type() == Type::Undefined; }
    bool isNone() const { return type() == Type::None; }
    bool isString() const { return type() == Type::String; }
    bool isList() const { return type() == Type::List; }
    bool isMap() const { return type() == Type::Map; }

    // Accessors: the type must match (assert).
    bool asBool() const;
    std::int64_t asInt() const;
    double asFloat() const;
    const std::string& asString() const;
    const std::vector<Value>& items() const;  // list
    const Entries& entries() const;           // map

    // Map: the value of `key`, or nullptr.
    const Value* find(std::string_view key) const;
    // Map: replaces the value of `key`, or appends it.
    void set(std::string key, Value value);
    // List: appends.
    void append(Value value);

    // Nesting depth of lists and maps (0 for scalars); the renderer refuses values nested deeper than kMaxDepth.
    std::uint32_t depth() const;
    static constexpr std::uint32_t kMaxDepth = 256;

    struct ListData;  // storage, defined by the renderer
    struct MapData;

private:
    friend struct ValueAccess;        // the renderer's access to list/map internals
    void absorb(const Value& child);  // updates this container's depth and namespace flag for a new child
    std::variant<std::monostate, std::nullptr_t, bool, std::int64_t, double, std::string, std::shared_ptr<ListData>,
                 std::shared_ptr<MapData>, std::shared_ptr<const jinja::Callable>>
        m_v;
};

struct ChatMessage {
    std::string role;  // "system", "user", "assistant", "tool", ...
    std::string content;
};

// Limits that keep a hostile template from hanging or exhausting memory; exceeding one is ErrorCode::TemplateError.
struct RenderLimits {
    std::size_t maxOutputBytes = std::size_t{1} << 20;  // the rendered text, and any one string or list built
    std::uint64_t maxSteps = 10'000'000;                // statements + expression nodes evaluated + elements visited
};

// A wall-clock reading in local time, as strftime_now() formats it.
struct LocalDateTime {
    int year = 1970;
    int month = 1;  // 1..12
    int day = 1;    // 1..31
    int hour = 0;
    int minute = 0;
    int second = 0;
};

struct ChatRenderInput {
    std::vector<ChatMessage> messages;  // becomes `messages`: a list of {"role", "content"} maps
    bool addGenerationPrompt = true;    // `add_generation_prompt`
    std::string bosToken;               // `bos_token`, ...
    std::string eosToken;
    std::string unkToken;
    std::string padToken;
    // Extra template variables (e.g. "tools", "enable_thinking"). They are set after the ones above, so they may
    // also replace them (e.g. "messages" with maps carrying "tool_calls").
    Value::Entries variables;
    std::optional<LocalDateTime> now;  // what strftime_now() reads; empty: the current local time
    RenderLimits limits;
};

class ChatTemplate {
public:
    // Parses `source`. Errors: ErrorCode::TemplateError, detail "<name>: line L, column C: <what was expected>".
    static Result<ChatTemplate> parse(std::string_view source, std::string name = {});
    // A built-in template by name: "chatml", "zephyr" or "llama2" (see builtinTemplateNames()).
    static Result<ChatTemplate> builtin(std::string_view name);

    // Renders the prompt. Errors (ErrorCode::TemplateError): raise_exception("msg") gives detail
    // "<name>: line L: msg"; type errors, undefined values used as objects, and exceeded limits likewise.
    Result<std::string> render(const ChatRenderInput& input) const;

    const std::string& name() const;
    const std::string& source() const;  // as given to parse()

private:
    explicit ChatTemplate(std::shared_ptr<const jinja::Program> program) : m_program(std::move(program)) {}
    std::shared_ptr<const jinja::Program> m_program;  // immutable, shared by copies
};

std::vector<std::string_view> builtinTemplateNames();

// Which template a model gets.
struct TemplateChoice {
    ChatTemplate tmpl;
    std::string name;         // "model" for the model's own template, else the built-in's name
    bool isFallback = false;  // true when the model has no template and a built-in default is used
    std::string notice;       // user-facing sentence when isFallback, else empty
};

// The model's own template (tokenizer.chat_template, absent or empty = none), or the "chatml" default with a notice
// when it has none. A template that does not parse is an error; the caller decides whether to fall back.
Result<TemplateChoice> chooseTemplate(const std::optional<std::string>& ggufTemplate);

// The text a template puts after an assistant turn (e.g. "<|im_end|>", "</s>", "<|eot_id|>", "<end_of_turn>"), for
// use as stop strings. How: render [user, assistant, user] with sentinel contents and take the text between the
// assistant sentinel and the second user sentinel; with leading whitespace skipped, its first "<...>" tag is the
// end-of-turn marker, or when it does not start with '<', its first line. Empty when the template puts nothing
// there. `tokens` supplies the special tokens and variables; its messages are ignored.
Result<std::vector<std::string>> endOfTurnStrings(const ChatTemplate& tmpl, const ChatRenderInput& tokens);

}  // namespace inference
