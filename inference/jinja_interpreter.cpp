// Chat-template interpreter: walks the syntax tree with Python/Jinja2 semantics (jinja2's default Undefined,
// sandboxed attribute lookup, loop scoping), the filters, tests and string/dict methods chat templates use, and
// transformers' globals. Every statement, expression node and element visited costs one step of the budget.
#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>
#include <limits>
#include <optional>

#include "jinja.h"

namespace inference::jinja {

namespace {

constexpr std::string_view kFilters[] = {
    "abs",        "max",   "min",    "sum",        "capitalize", "count",   "d",      "default",
    "first",      "float", "int",    "items",      "join",       "last",    "length", "list",
    "lower",      "map",   "reject", "rejectattr", "replace",    "reverse", "safe",   "select",
    "selectattr", "sort",  "string", "title",      "tojson",     "trim",    "upper"};

constexpr std::string_view kTests[] = {
    "boolean", "callable",  "defined",     "divisibleby", "eq",      "equalto",  "even",   "false",    "float",
    "ge",      "gt",        "greaterthan", "in",          "integer", "iterable", "le",     "lessthan", "lower",
    "lt",      "mapping",   "ne",          "none",        "number",  "odd",      "sameas", "sequence", "string",
    "true",    "undefined", "upper",       "==",          "!=",      "<",        "<=",     ">",        ">="};

template <std::size_t N>
bool contains(const std::string_view (&list)[N], std::string_view name) {
    return std::find(std::begin(list), std::end(list), name) != std::end(list);
}

bool isNumber(const Value& v) {
    return v.type() == Value::Type::Int || v.type() == Value::Type::Float || v.type() == Value::Type::Bool;
}
bool isIntLike(const Value& v) {
    return v.type() == Value::Type::Int || v.type() == Value::Type::Bool;
}
std::int64_t toInt(const Value& v) {
    if (v.type() == Value::Type::Bool)
        return v.asBool() ? 1 : 0;
    if (v.type() != Value::Type::Int)
        throw Failure{std::string("expected an integer, got '") + typeName(v) + "'"};
    return v.asInt();
}
double toDouble(const Value& v) {
    return v.type() == Value::Type::Float ? v.asFloat() : static_cast<double>(toInt(v));
}

char asciiUpper(char c) {
    return c >= 'a' && c <= 'z' ? static_cast<char>(c - 32) : c;
}
char asciiLower(char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}
bool isAsciiLetter(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Case mapping is ASCII-only; other characters are kept as they are.
std::string upper(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), asciiUpper);
    return s;
}
std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(), asciiLower);
    return s;
}
// Python's str.title(): a letter after a non-letter is upper-cased, the others lower-cased (non-ASCII bytes count
// as letters and stay as they are).
std::string title(std::string s) {
    bool previousCased = false;
    for (char& c : s) {
        const bool cased = isAsciiLetter(c) || static_cast<unsigned char>(c) >= 0x80;
        if (isAsciiLetter(c))
            c = previousCased ? asciiLower(c) : asciiUpper(c);
        previousCased = cased;
    }
    return s;
}
std::string capitalize(std::string s) {
    s = lower(std::move(s));
    if (!s.empty())
        s[0] = asciiUpper(s[0]);
    return s;
}

std::string joinCodePoints(const std::vector<std::string_view>& cps, std::size_t begin, std::size_t end) {
    std::string out;
    for (std::size_t i = begin; i < end; ++i) out += cps[i];
    return out;
}

// Python's str.strip/lstrip/rstrip: `chars` (a set of code points) or whitespace when absent.
std::string strip(std::string_view s, const std::optional<std::string>& chars, bool left, bool right) {
    std::vector<std::string_view> cps = codePoints(s);
    std::vector<std::string_view> set;
    if (chars)
        set = codePoints(*chars);
    auto strippable = [&](std::string_view cp) {
        return chars ? std::find(set.begin(), set.end(), cp) != set.end() : isPySpace(cp);
    };
    std::size_t b = 0, e = cps.size();
    while (left && b < e && strippable(cps[b])) ++b;
    while (right && e > b && strippable(cps[e - 1])) --e;
    return joinCodePoints(cps, b, e);
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
std::int64_t daysFromCivil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

// strftime in the C locale (English names) whatever the process locale is, like Python's default.
std::string formatTime(std::string_view fmt, const LocalDateTime& t) {
    static constexpr const char* kDays[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                            "Thursday", "Friday", "Saturday"};
    static constexpr const char* kMonths[] = {"January", "February", "March",     "April",   "May",      "June",
                                              "July",    "August",   "September", "October", "November", "December"};
    const int month = std::clamp(t.month, 1, 12);
    const std::int64_t days =
        daysFromCivil(t.year, static_cast<unsigned>(month), static_cast<unsigned>(std::max(t.day, 1)));
    const int weekday = static_cast<int>(((days % 7) + 11) % 7);  // 1970-01-01 was a Thursday (4)
    const int yearDay = static_cast<int>(days - daysFromCivil(t.year, 1, 1)) + 1;
    std::string out;
    for (std::size_t i = 0; i < fmt.size(); ++i) {
        if (fmt[i] != '%' || i + 1 >= fmt.size()) {
            out += fmt[i];
            continue;
        }
        bool pad = true;
        char c = fmt[++i];
        if (c == '-' && i + 1 < fmt.size()) {  // glibc's "no padding" flag
            pad = false;
            c = fmt[++i];
        }
        auto num = [&](int v, int width) {
            std::string s = std::to_string(v);
            if (pad && static_cast<int>(s.size()) < width)
                s.insert(0, static_cast<std::size_t>(width) - s.size(), '0');
            out += s;
        };
        switch (c) {
            case 'a':
                out += std::string_view(kDays[weekday]).substr(0, 3);
                break;
            case 'A':
                out += kDays[weekday];
                break;
            case 'b':
            case 'h':
                out += std::string_view(kMonths[month - 1]).substr(0, 3);
                break;
            case 'B':
                out += kMonths[month - 1];
                break;
            case 'd':
                num(t.day, 2);
                break;
            case 'e':
                out += (pad && t.day < 10 ? " " : "") + std::to_string(t.day);
                break;
            case 'H':
                num(t.hour, 2);
                break;
            case 'I':
                num(t.hour % 12 == 0 ? 12 : t.hour % 12, 2);
                break;
            case 'j':
                num(yearDay, 3);
                break;
            case 'm':
                num(month, 2);
                break;
            case 'M':
                num(t.minute, 2);
                break;
            case 'p':
                out += t.hour < 12 ? "AM" : "PM";
                break;
            case 'S':
                num(t.second, 2);
                break;
            case 'y':
                num(((t.year % 100) + 100) % 100, 2);
                break;
            case 'Y':
                out += std::to_string(t.year);
                break;
            case 'F':
                out += formatTime("%Y-%m-%d", t);
                break;
            case '%':
                out += '%';
                break;
            default:
                out += '%';
                out += c;
                break;
        }
    }
    return out;
}

LocalDateTime currentLocalTime() {
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    localtime_r(&now, &tm);
    return LocalDateTime{tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec};
}

Value makeMessages(const std::vector<ChatMessage>& messages) {
    std::vector<Value> list;
    list.reserve(messages.size());
    for (const ChatMessage& m : messages) list.push_back(Value::map({{"role", m.role}, {"content", m.content}}));
    return Value::list(std::move(list));
}

// Positional and keyword arguments of a call, filter or test (the subject excluded).
struct Args {
    std::vector<Value> positional;
    std::vector<std::pair<std::string, Value>> keywords;

    // The argument at `index` or named `name`, else null.
    const Value* get(std::size_t index, std::string_view name) const {
        if (index < positional.size())
            return &positional[index];
        for (const auto& [k, v] : keywords)
            if (k == name)
                return &v;
        return nullptr;
    }
    Value getOr(std::size_t index, std::string_view name, Value fallback) const {
        const Value* v = get(index, name);
        return v && !v->isUndefined() ? *v : fallback;
    }
};

class Interpreter {
public:
    Interpreter(const Program& program, const ChatRenderInput& input)
        : m_program(program), m_input(input), m_limits(input.limits) {}

    std::string run() {
        Frame globals;
        for (const char* name : {"range", "namespace", "dict", "raise_exception", "strftime_now"})
            globals.emplace_back(name, ValueAccess::makeCallable(std::make_shared<Callable>(Callable{name})));
        globals.emplace_back("messages", makeMessages(m_input.messages));
        globals.emplace_back("add_generation_prompt", m_input.addGenerationPrompt);
        globals.emplace_back("bos_token", m_input.bosToken);
        globals.emplace_back("eos_token", m_input.eosToken);
        globals.emplace_back("unk_token", m_input.unkToken);
        globals.emplace_back("pad_token", m_input.padToken);
        m_frames.push_back(std::move(globals));
        for (const auto& [name, value] : m_input.variables) assign(name, value);
        std::string out;
        try {
            exec(m_program.body, out);
        } catch (const Failure& f) {
            throw Failure{m_program.lineColumn(m_at) + ": " + f.message};
        }
        return out;
    }

private:
    using Frame = std::vector<std::pair<std::string, Value>>;
    enum class Flow { Normal, Break, Continue };
    static constexpr int kMaxMacroDepth = 32;   // recursion bound for macros
    static constexpr int kMaxEvalDepth = 1000;  // statements + expressions active at once: bounds the stack

    // Counts the recursion depth of exec/eval across macro calls.
    class Nest {
    public:
        explicit Nest(int& depth) : m_depth(depth) {
            if (++m_depth > kMaxEvalDepth)
                fail("the template nests more than " + std::to_string(kMaxEvalDepth) + " levels deep");
        }
        ~Nest() { --m_depth; }
        Nest(const Nest&) = delete;
        Nest& operator=(const Nest&) = delete;

    private:
        int& m_depth;
    };

    [[noreturn]] static void fail(const std::string& what) { throw Failure{what}; }

    void step(std::uint64_t n = 1) {
        m_steps += n;
        if (m_steps > m_limits.maxSteps)
            fail("the template ran out of its budget of " + std::to_string(m_limits.maxSteps) +
                 " steps (does it loop forever?)");
    }

    void checkSize(std::size_t size) const {
        if (size > m_limits.maxOutputBytes)
            fail("a value of " + std::to_string(size) + " bytes or items exceeds the limit of " +
                 std::to_string(m_limits.maxOutputBytes));
    }

    Value checked(Value v) const {
        if (v.depth() > Value::kMaxDepth)
            fail("values nested deeper than " + std::to_string(Value::kMaxDepth) + " levels");
        return v;
    }

    std::string str(const Value& v) const { return toStr(v, m_limits.maxOutputBytes); }

    void write(std::string& out, std::string_view s) const {
        if (out.size() + s.size() > m_limits.maxOutputBytes)
            fail("the rendered prompt exceeds the limit of " + std::to_string(m_limits.maxOutputBytes) + " bytes");
        out += s;
    }

    // ---- scopes ----

    Value lookup(const std::string& name) const {
        for (auto frame = m_frames.rbegin(); frame != m_frames.rend(); ++frame)
            for (const auto& [k, v] : *frame)
                if (k == name)
                    return v;
        return Value();
    }

    void assign(const std::string& name, Value value) {
        Frame& frame = m_frames.back();
        for (auto& [k, v] : frame) {
            if (k == name) {
                v = std::move(value);
                return;
            }
        }
        frame.emplace_back(name, std::move(value));
    }

    void bind(const std::vector<std::string>& targets, const Value& value) {
        if (targets.size() == 1) {
            assign(targets[0], value);
            return;
        }
        std::vector<Value> items = iterate(value);
        if (items.size() != targets.size())
            fail("cannot unpack " + std::to_string(items.size()) + " values into " + std::to_string(targets.size()) +
                 " names");
        for (std::size_t i = 0; i < targets.size(); ++i) assign(targets[i], items[i]);
    }

    // ---- statements ----

    Flow exec(const Body& body, std::string& out) {
        for (const StmtPtr& s : body) {
            if (Flow f = execStmt(*s, out); f != Flow::Normal)
                return f;
        }
        return Flow::Normal;
    }

    Flow execStmt(const Stmt& s, std::string& out) {
        Nest nest(m_evalDepth);
        step();
        m_at = s.offset;
        switch (s.kind) {
            case StmtKind::Text:
                write(out, s.text);
                break;
            case StmtKind::Print:
                write(out, str(eval(*s.expr)));
                break;
            case StmtKind::If:
                for (const auto& [cond, body] : s.branches)
                    if (!cond || truthy(eval(*cond)))
                        return exec(body, out);
                break;
            case StmtKind::For:
                return execFor(s, out);
            case StmtKind::Set: {
                Value value = eval(*s.expr);
                if (s.attribute.empty()) {
                    bind(s.targets, value);
                    break;
                }
                Value ns = lookup(s.targets[0]);
                Value::MapData* map = ValueAccess::map(ns);
                m_at = s.offset;
                if (!map || !map->isNamespace)
                    fail("cannot assign attribute on non-namespace object '" + s.targets[0] + "'");
                if (ValueAccess::holdsNamespace(value))  // keeps namespaces acyclic
                    fail("a namespace cannot hold another namespace");
                ns.set(s.attribute, std::move(value));
                checked(ns);
                break;
            }
            case StmtKind::SetBlock: {
                std::string captured;
                Flow f = exec(s.body, captured);
                assign(s.targets[0], std::move(captured));
                return f;
            }
            case StmtKind::Macro:
                assign(s.targets[0], ValueAccess::makeCallable(std::make_shared<Callable>(Callable{s.targets[0], &s})));
                break;
            case StmtKind::Break:
                return Flow::Break;
            case StmtKind::Continue:
                return Flow::Continue;
        }
        return Flow::Normal;
    }

    // Each iteration gets its own scope, so `set` inside a loop body is not seen after the loop nor in the next
    // iteration (jinja2 behaves the same).
    Flow execFor(const Stmt& s, std::string& out) {
        std::vector<Value> items = iterate(eval(*s.expr));
        if (s.filter) {
            std::vector<Value> kept;
            for (Value& item : items) {
                m_frames.emplace_back();
                bind(s.targets, item);
                const bool keep = truthy(eval(*s.filter));
                m_frames.pop_back();
                if (keep)
                    kept.push_back(std::move(item));
            }
            items = std::move(kept);
        }
        if (items.empty())
            return exec(s.elseBody, out);
        const auto n = static_cast<std::int64_t>(items.size());
        for (std::int64_t i = 0; i < n; ++i) {
            step();
            Value loop =
                Value::map({{"index", i + 1},
                            {"index0", i},
                            {"revindex", n - i},
                            {"revindex0", n - i - 1},
                            {"first", i == 0},
                            {"last", i == n - 1},
                            {"length", n},
                            {"depth", 1},
                            {"depth0", 0},
                            {"cycle", ValueAccess::makeCallable(std::make_shared<Callable>(Callable{"cycle"}))}});
            if (i > 0)
                loop.set("previtem", items[static_cast<std::size_t>(i - 1)]);
            if (i + 1 < n)
                loop.set("nextitem", items[static_cast<std::size_t>(i + 1)]);
            m_frames.emplace_back();
            bind(s.targets, items[static_cast<std::size_t>(i)]);
            assign("loop", std::move(loop));
            const Flow f = exec(s.body, out);
            m_frames.pop_back();
            if (f == Flow::Break)
                break;
        }
        return Flow::Normal;
    }

    // Python's iter(): lists, dict keys, the code points of a string; undefined iterates as empty.
    std::vector<Value> iterate(const Value& v) {
        switch (v.type()) {
            case Value::Type::Undefined:
                return {};
            case Value::Type::List:
                step(v.items().size());
                return v.items();
            case Value::Type::Map: {
                if (ValueAccess::map(v)->isNamespace)
                    break;
                std::vector<Value> keys;
                for (const auto& e : v.entries()) keys.emplace_back(e.first);
                step(keys.size());
                return keys;
            }
            case Value::Type::String: {
                std::vector<Value> chars;
                for (std::string_view cp : codePoints(v.asString())) chars.emplace_back(cp);
                step(chars.size());
                return chars;
            }
            default:
                break;
        }
        fail(std::string("'") + typeName(v) + "' object is not iterable");
    }

    // ---- expressions ----

    Value eval(const Expr& e) {
        Nest nest(m_evalDepth);
        step();
        m_at = e.offset;
        switch (e.kind) {
            case ExprKind::Literal:
                return e.literal;
            case ExprKind::Name:
                return lookup(e.name);
            case ExprKind::List:
            case ExprKind::Tuple: {
                std::vector<Value> items;
                for (const ExprPtr& a : e.args) items.push_back(eval(*a));
                return checked(e.kind == ExprKind::Tuple ? ValueAccess::makeTuple(std::move(items))
                                                         : Value::list(std::move(items)));
            }
            case ExprKind::Dict: {
                Value::Entries entries;
                for (std::size_t i = 0; i + 1 < e.args.size(); i += 2) {
                    Value key = eval(*e.args[i]);
                    if (!key.isString())
                        fail("dictionary keys must be strings");
                    entries.emplace_back(key.asString(), eval(*e.args[i + 1]));
                }
                return checked(Value::map(std::move(entries)));
            }
            case ExprKind::GetAttr: {
                Value object = eval(*e.args[0]);
                m_at = e.offset;
                return getAttr(object, e.name);
            }
            case ExprKind::GetItem: {
                Value object = eval(*e.args[0]);
                Value key = eval(*e.args[1]);
                m_at = e.offset;
                return getItem(object, key);
            }
            case ExprKind::Slice:
                return evalSlice(e);
            case ExprKind::Call:
                return evalCall(e);
            case ExprKind::Filter: {
                Value subject = eval(*e.args[0]);
                Args args = evalArgs(e);
                m_at = e.offset;
                return applyFilter(e.name, subject, args);
            }
            case ExprKind::Test: {
                Value subject = eval(*e.args[0]);
                Args args = evalArgs(e);
                m_at = e.offset;
                return applyTest(e.name, subject, args) != e.negated;
            }
            case ExprKind::Not:
                return !truthy(eval(*e.args[0]));
            case ExprKind::Negate:
            case ExprKind::Plus: {
                Value v = eval(*e.args[0]);
                m_at = e.offset;
                if (!isNumber(v))
                    fail(std::string("bad operand type for unary ") + (e.kind == ExprKind::Negate ? "-" : "+") + ": '" +
                         typeName(v) + "'");
                if (e.kind == ExprKind::Plus)
                    return v.type() == Value::Type::Bool ? Value(toInt(v)) : v;
                if (v.type() == Value::Type::Float)
                    return -v.asFloat();
                if (toInt(v) == std::numeric_limits<std::int64_t>::min())
                    fail("integer overflow");
                return -toInt(v);
            }
            case ExprKind::Binary: {
                Value a = eval(*e.args[0]);
                Value b = eval(*e.args[1]);
                m_at = e.offset;
                return binaryOp(e.name, a, b);
            }
            case ExprKind::And: {
                Value a = eval(*e.args[0]);
                return truthy(a) ? eval(*e.args[1]) : a;
            }
            case ExprKind::Or: {
                Value a = eval(*e.args[0]);
                return truthy(a) ? a : eval(*e.args[1]);
            }
            case ExprKind::Compare: {
                Value left = eval(*e.args[0]);
                for (std::size_t i = 0; i < e.ops.size(); ++i) {
                    Value right = eval(*e.args[i + 1]);
                    m_at = e.offset;
                    if (!compare(e.ops[i], left, right))
                        return false;
                    left = std::move(right);
                }
                return true;
            }
            case ExprKind::Conditional:
                if (truthy(eval(*e.args[1])))
                    return eval(*e.args[0]);
                return e.args[2] ? eval(*e.args[2]) : Value();
        }
        return Value();
    }

    Args evalArgs(const Expr& e) {
        Args args;
        for (std::size_t i = 1; i < e.args.size(); ++i) args.positional.push_back(eval(*e.args[i]));
        for (const auto& [name, expr] : e.kwargs) args.keywords.emplace_back(name, eval(*expr));
        return args;
    }

    // jinja2's sandboxed getattr: a missing attribute is undefined, but any attribute of undefined is an error.
    Value getAttr(const Value& object, const std::string& name) {
        if (object.isUndefined())
            fail("undefined value has no attribute '" + name + "'");
        if (object.isMap())
            if (const Value* v = object.find(name))
                return *v;
        return Value();
    }

    static std::int64_t normalizeIndex(std::int64_t i, std::size_t size) {
        return i < 0 ? i + static_cast<std::int64_t>(size) : i;
    }

    Value getItem(const Value& object, const Value& key) {
        switch (object.type()) {
            case Value::Type::Undefined:
                fail("undefined value has no item " + repr(key, 256));
            case Value::Type::Map:
                if (key.isString())
                    if (const Value* v = object.find(key.asString()))
                        return *v;
                break;
            case Value::Type::List:
                if (isIntLike(key)) {
                    const std::int64_t i = normalizeIndex(toInt(key), object.items().size());
                    if (i >= 0 && i < static_cast<std::int64_t>(object.items().size()))
                        return object.items()[static_cast<std::size_t>(i)];
                }
                break;
            case Value::Type::String:
                if (isIntLike(key)) {
                    std::vector<std::string_view> cps = codePoints(object.asString());
                    const std::int64_t i = normalizeIndex(toInt(key), cps.size());
                    if (i >= 0 && i < static_cast<std::int64_t>(cps.size()))
                        return Value(cps[static_cast<std::size_t>(i)]);
                }
                break;
            default:
                break;
        }
        return Value();
    }

    // Python slicing of lists and strings (per code point).
    Value evalSlice(const Expr& e) {
        Value object = eval(*e.args[0]);
        std::optional<std::int64_t> bounds[3];
        for (int k = 0; k < 3; ++k) {
            if (!e.args[static_cast<std::size_t>(k) + 1])
                continue;
            Value b = eval(*e.args[static_cast<std::size_t>(k) + 1]);
            if (b.isNone() || b.isUndefined())
                continue;
            if (!isIntLike(b))
                fail("slice indices must be integers or None");
            bounds[k] = toInt(b);
        }
        m_at = e.offset;
        const std::int64_t stepBy = bounds[2].value_or(1);
        if (stepBy == 0)
            fail("slice step cannot be zero");
        std::vector<std::string_view> cps;
        std::size_t size = 0;
        if (object.isString()) {
            cps = codePoints(object.asString());
            size = cps.size();
        } else if (object.isList()) {
            size = object.items().size();
        } else {
            fail(std::string("'") + typeName(object) + "' object cannot be sliced");
        }
        const auto n = static_cast<std::int64_t>(size);
        auto adjust = [&](std::optional<std::int64_t> b, std::int64_t fallback) {
            if (!b)
                return fallback;
            std::int64_t i = *b;
            if (i < 0) {
                i += n;
                if (i < 0)
                    i = stepBy < 0 ? -1 : 0;
            } else if (i >= n) {
                i = stepBy < 0 ? n - 1 : n;
            }
            return i;
        };
        const std::int64_t start = adjust(bounds[0], stepBy < 0 ? n - 1 : 0);
        const std::int64_t stop = adjust(bounds[1], stepBy < 0 ? -1 : n);
        std::vector<std::size_t> picks;
        for (std::int64_t i = start; stepBy > 0 ? i < stop : i > stop; i += stepBy)
            picks.push_back(static_cast<std::size_t>(i));
        step(picks.size());
        if (object.isString()) {
            std::string out;
            for (std::size_t i : picks) out += cps[i];
            return out;
        }
        std::vector<Value> out;
        for (std::size_t i : picks) out.push_back(object.items()[i]);
        return ValueAccess::list(object)->isTuple ? ValueAccess::makeTuple(std::move(out))
                                                  : Value::list(std::move(out));
    }

    Value evalCall(const Expr& e) {
        const Expr& callee = *e.args[0];
        Value function;
        Value self;  // the object a method is called on
        if (callee.kind == ExprKind::GetAttr) {
            self = eval(*callee.args[0]);
            Args args = evalArgs(e);
            m_at = e.offset;
            if (std::optional<Value> result = callMethod(self, callee.name, args))
                return *result;
            function = getAttr(self, callee.name);
            return callFunction(function, args, self, callee.name);
        }
        function = eval(callee);
        Args args = evalArgs(e);
        m_at = e.offset;
        return callFunction(function, args, self, callee.kind == ExprKind::Name ? callee.name : "");
    }

    Value callFunction(const Value& function, const Args& args, const Value& self, const std::string& name) {
        const Callable* c = ValueAccess::callable(function);
        if (!c) {
            if (function.isUndefined())
                fail("'" + name + "' is undefined and cannot be called");
            fail(std::string("'") + typeName(function) + "' object is not callable");
        }
        if (c->macro)
            return callMacro(*c->macro, args);
        if (c->name == "raise_exception")
            fail(args.positional.empty() ? std::string("raise_exception() called") : str(args.positional[0]));
        if (c->name == "strftime_now") {
            const Value* fmt = args.get(0, "format");
            if (!fmt || !fmt->isString())
                fail("strftime_now() takes a format string");
            return formatTime(fmt->asString(), m_input.now ? *m_input.now : currentLocalTime());
        }
        if (c->name == "namespace" || c->name == "dict") {
            Value::Entries entries;
            if (!args.positional.empty()) {
                if (args.positional.size() > 1 || !args.positional[0].isMap())
                    fail(c->name + "() takes one dict and keyword arguments");
                entries = args.positional[0].entries();
            }
            for (const auto& kw : args.keywords) entries.push_back(kw);
            if (c->name == "dict")
                return checked(Value::map(std::move(entries)));
            for (const auto& kv : entries)
                if (ValueAccess::holdsNamespace(kv.second))
                    fail("a namespace cannot hold another namespace");
            return checked(ValueAccess::makeNamespace(std::move(entries)));
        }
        if (c->name == "cycle") {  // loop.cycle(a, b, ...)
            const Value* index = self.isMap() ? self.find("index0") : nullptr;
            if (args.positional.empty() || !index || !isIntLike(*index) || toInt(*index) < 0)
                fail("loop.cycle() needs at least one argument");
            return args.positional[static_cast<std::size_t>(toInt(*index)) % args.positional.size()];
        }
        return range(args);
    }

    // A macro sees its arguments and the template's top-level variables, not the caller's loop variables, and
    // returns what its body renders.
    Value callMacro(const Stmt& macro, const Args& args) {
        const std::string& name = macro.targets[0];
        if (args.positional.size() > macro.params.size())
            fail("macro '" + name + "' takes not more than " + std::to_string(macro.params.size()) + " argument(s)");
        for (const auto& kw : args.keywords) {
            const auto& ps = macro.params;
            if (std::none_of(ps.begin(), ps.end(), [&](const auto& p) { return p.first == kw.first; }))
                fail("macro '" + name + "' takes no keyword argument '" + kw.first + "'");
        }
        if (m_macroDepth >= kMaxMacroDepth)
            fail("macros nested deeper than " + std::to_string(kMaxMacroDepth) + " calls");
        std::vector<Frame> callerFrames = std::move(m_frames);
        m_frames = {callerFrames.front(), Frame{}};
        ++m_macroDepth;
        for (std::size_t i = 0; i < macro.params.size(); ++i) {
            const auto& [param, fallback] = macro.params[i];
            const Value* given = args.get(i, param);
            assign(param, given ? *given : fallback ? eval(*fallback) : Value());
        }
        std::string out;
        exec(macro.body, out);
        --m_macroDepth;
        m_frames = std::move(callerFrames);
        return out;
    }

    Value range(const Args& args) {
        std::int64_t bounds[3] = {0, 0, 1};
        if (args.positional.empty() || args.positional.size() > 3 || !args.keywords.empty())
            fail("range() takes 1 to 3 integer arguments");
        for (const Value& v : args.positional)
            if (!isIntLike(v))
                fail(std::string("range() arguments must be integers, not '") + typeName(v) + "'");
        if (args.positional.size() == 1) {
            bounds[1] = toInt(args.positional[0]);
        } else {
            for (std::size_t i = 0; i < args.positional.size(); ++i) bounds[i] = toInt(args.positional[i]);
        }
        if (bounds[2] == 0)
            fail("range() step must not be zero");
        const double count = std::max(0.0, std::ceil((static_cast<double>(bounds[1]) - static_cast<double>(bounds[0])) /
                                                     static_cast<double>(bounds[2])));
        if (count > static_cast<double>(m_limits.maxSteps - std::min(m_steps, m_limits.maxSteps)))
            step(m_limits.maxSteps);  // cannot be iterated within the budget anyway
        checkSize(static_cast<std::size_t>(count));
        std::vector<Value> items;
        for (std::int64_t i = bounds[0]; bounds[2] > 0 ? i < bounds[1] : i > bounds[1]; i += bounds[2])
            items.emplace_back(i);
        step(items.size());
        return Value::list(std::move(items));
    }

    static std::optional<std::string> optionalString(const Value* v) {
        if (!v || v->isNone() || v->isUndefined())
            return std::nullopt;
        if (!v->isString())
            fail(std::string("expected a string argument, got '") + typeName(*v) + "'");
        return v->asString();
    }

    std::string stringArg(const Args& args, std::size_t index, std::string_view name) {
        std::optional<std::string> s = optionalString(args.get(index, name));
        if (!s)
            fail("missing string argument '" + std::string(name) + "'");
        return *s;
    }

    // str and dict methods; nullopt when `object` has no such method.
    std::optional<Value> callMethod(const Value& object, const std::string& name, const Args& args) {
        if (object.isString()) {
            const std::string& s = object.asString();
            step(s.size() / 64);
            if (name == "strip" || name == "lstrip" || name == "rstrip")
                return strip(s, optionalString(args.get(0, "chars")), name != "rstrip", name != "lstrip");
            if (name == "upper")
                return upper(s);
            if (name == "lower")
                return lower(s);
            if (name == "title")
                return title(s);
            if (name == "capitalize")
                return capitalize(s);
            if (name == "startswith" || name == "endswith") {
                const Value* arg = args.get(0, "prefix");
                std::vector<Value> options = arg && arg->isList() ? arg->items() : std::vector<Value>{};
                if (arg && arg->isString())
                    options.push_back(*arg);
                if (options.empty())
                    fail(name + "() takes a string or a tuple of strings");
                return std::any_of(options.begin(), options.end(), [&](const Value& o) {
                    return o.isString() &&
                           (name == "startswith" ? s.starts_with(o.asString()) : s.ends_with(o.asString()));
                });
            }
            if (name == "split")
                return split(s, optionalString(args.get(0, "sep")), toInt(args.getOr(1, "maxsplit", Value(-1))));
            if (name == "replace")
                return replace(s, stringArg(args, 0, "old"), stringArg(args, 1, "new"),
                               toInt(args.getOr(2, "count", Value(-1))));
            if (name == "find") {
                std::size_t at = s.find(stringArg(args, 0, "sub"));
                return at == std::string::npos ? std::int64_t{-1}
                                               : static_cast<std::int64_t>(codePoints(s.substr(0, at)).size());
            }
            if (name == "join") {
                std::string out;
                const Value* items = args.get(0, "iterable");
                bool first = true;
                for (const Value& item : iterate(items ? *items : Value())) {
                    if (!item.isString())
                        fail(std::string("join() expects strings, got '") + typeName(item) + "'");
                    if (!first)
                        out += s;
                    first = false;
                    out += item.asString();
                    checkSize(out.size());
                }
                return out;
            }
        } else if (object.isMap() && !ValueAccess::map(object)->isNamespace) {
            if (name == "items" || name == "keys" || name == "values") {
                std::vector<Value> out;
                for (const auto& [k, v] : object.entries())
                    out.push_back(name == "keys" ? Value(k) : name == "values" ? v : ValueAccess::makeTuple({k, v}));
                step(out.size());
                return Value::list(std::move(out));
            }
            if (name == "get") {
                const Value* key = args.get(0, "key");
                const Value* found = key && key->isString() ? object.find(key->asString()) : nullptr;
                return found ? *found : args.getOr(1, "default", Value(nullptr));
            }
        }
        return std::nullopt;
    }

    Value split(const std::string& s, const std::optional<std::string>& sep, std::int64_t maxSplit) {
        std::vector<Value> parts;
        if (sep) {
            if (sep->empty())
                fail("empty separator");
            std::size_t begin = 0;
            for (std::size_t at = s.find(*sep); at != std::string::npos && maxSplit != 0; at = s.find(*sep, begin)) {
                parts.emplace_back(s.substr(begin, at - begin));
                begin = at + sep->size();
                --maxSplit;
            }
            parts.emplace_back(s.substr(begin));
        } else {  // runs of whitespace; the remainder after maxsplit keeps its trailing whitespace
            std::vector<std::string_view> cps = codePoints(s);
            std::size_t i = 0;
            for (;;) {
                while (i < cps.size() && isPySpace(cps[i])) ++i;
                if (i == cps.size())
                    break;
                if (maxSplit == 0) {
                    parts.emplace_back(joinCodePoints(cps, i, cps.size()));
                    break;
                }
                std::size_t j = i;
                while (j < cps.size() && !isPySpace(cps[j])) ++j;
                parts.emplace_back(joinCodePoints(cps, i, j));
                i = j;
                --maxSplit;
            }
        }
        step(parts.size());
        return Value::list(std::move(parts));
    }

    std::string replace(const std::string& s, const std::string& from, const std::string& to, std::int64_t count) {
        std::string out;
        if (from.empty()) {  // Python inserts `to` around every code point
            for (std::string_view cp : codePoints(s)) {
                if (count-- != 0)
                    out += to;
                out += cp;
                checkSize(out.size());
            }
            if (count != 0)
                out += to;
        } else {
            std::size_t begin = 0;
            for (std::size_t at = s.find(from); at != std::string::npos && count != 0; at = s.find(from, begin)) {
                out.append(s, begin, at - begin).append(to);
                begin = at + from.size();
                --count;
                checkSize(out.size());
            }
            out.append(s, begin);
        }
        checkSize(out.size());
        return out;
    }

    // ---- operators ----

    bool equals(const Value& a, const Value& b) {
        step();
        if (isNumber(a) && isNumber(b)) {
            if (isIntLike(a) && isIntLike(b))
                return toInt(a) == toInt(b);
            return toDouble(a) == toDouble(b);
        }
        if (a.type() != b.type())
            return false;
        switch (a.type()) {
            case Value::Type::Undefined:
            case Value::Type::None:
                return true;
            case Value::Type::String:
                return a.asString() == b.asString();
            case Value::Type::List: {
                if (ValueAccess::list(a) == ValueAccess::list(b))
                    return true;
                if (ValueAccess::list(a)->isTuple != ValueAccess::list(b)->isTuple)
                    return false;
                const auto& x = a.items();
                const auto& y = b.items();
                return x.size() == y.size() && std::equal(x.begin(), x.end(), y.begin(),
                                                          [&](const Value& p, const Value& q) { return equals(p, q); });
            }
            case Value::Type::Map: {
                if (ValueAccess::map(a) == ValueAccess::map(b))
                    return true;
                if (ValueAccess::map(a)->isNamespace || ValueAccess::map(b)->isNamespace ||
                    a.entries().size() != b.entries().size())
                    return false;
                for (const auto& [k, v] : a.entries()) {
                    const Value* other = b.find(k);
                    if (!other || !equals(v, *other))
                        return false;
                }
                return true;
            }
            case Value::Type::Callable:
                return ValueAccess::callable(a) == ValueAccess::callable(b);
            default:
                return false;
        }
    }

    // Python's a < b for numbers, strings (code point order) and lists.
    bool less(const Value& a, const Value& b) {
        step();
        if (isNumber(a) && isNumber(b))
            return isIntLike(a) && isIntLike(b) ? toInt(a) < toInt(b) : toDouble(a) < toDouble(b);
        if (a.isString() && b.isString())
            return a.asString() < b.asString();
        const bool tuple = a.isList() && ValueAccess::list(a)->isTuple;
        if (a.isList() && b.isList() && tuple == ValueAccess::list(b)->isTuple) {
            const auto& x = a.items();
            const auto& y = b.items();
            for (std::size_t i = 0; i < x.size() && i < y.size(); ++i)
                if (!equals(x[i], y[i]))
                    return less(x[i], y[i]);
            return x.size() < y.size();
        }
        fail(std::string("'<' not supported between instances of '") + typeName(a) + "' and '" + typeName(b) + "'");
    }

    bool contains(const Value& container, const Value& item) {
        switch (container.type()) {
            case Value::Type::Undefined:
                return false;
            case Value::Type::String:
                if (!item.isString())
                    fail(std::string("'in <string>' requires string as left operand, not ") + typeName(item));
                step(container.asString().size() / 64);
                return container.asString().find(item.asString()) != std::string::npos;
            case Value::Type::List:
                return std::any_of(container.items().begin(), container.items().end(),
                                   [&](const Value& v) { return equals(v, item); });
            case Value::Type::Map:
                if (!ValueAccess::map(container)->isNamespace)
                    return item.isString() && container.find(item.asString()) != nullptr;
                break;
            default:
                break;
        }
        fail(std::string("argument of type '") + typeName(container) + "' is not iterable");
    }

    bool compare(const std::string& op, const Value& a, const Value& b) {
        if (op == "==")
            return equals(a, b);
        if (op == "!=")
            return !equals(a, b);
        if (op == "<")
            return less(a, b);
        if (op == ">")
            return less(b, a);
        if (op == "<=")
            return !less(b, a);
        if (op == ">=")
            return !less(a, b);
        if (op == "in")
            return contains(b, a);
        return !contains(b, a);  // "not in"
    }

    [[noreturn]] static void operandError(const std::string& op, const Value& a, const Value& b) {
        if (a.isUndefined() || b.isUndefined())
            fail("undefined value used with '" + op + "'");
        fail("unsupported operand type(s) for " + op + ": '" + typeName(a) + "' and '" + typeName(b) + "'");
    }

    // op is one of __builtin_{add,sub,mul}_overflow.
    template <typename Op>
    static std::int64_t checkedInt(Op op, std::int64_t a, std::int64_t b) {
        std::int64_t r = 0;
        if (op(a, b, &r))
            fail("integer overflow");
        return r;
    }
    static bool addOverflow(std::int64_t a, std::int64_t b, std::int64_t* r) { return __builtin_add_overflow(a, b, r); }
    static bool subOverflow(std::int64_t a, std::int64_t b, std::int64_t* r) { return __builtin_sub_overflow(a, b, r); }
    static bool mulOverflow(std::int64_t a, std::int64_t b, std::int64_t* r) { return __builtin_mul_overflow(a, b, r); }

    Value repeat(const Value& sequence, std::int64_t times) {
        times = std::max<std::int64_t>(times, 0);
        const std::size_t unit = sequence.isString() ? sequence.asString().size() : sequence.items().size();
        if (unit != 0 && static_cast<std::uint64_t>(times) > m_limits.maxOutputBytes / unit)
            checkSize(m_limits.maxOutputBytes + 1);
        step(unit * static_cast<std::size_t>(times) / 64);
        if (sequence.isString()) {
            std::string out;
            for (std::int64_t i = 0; i < times; ++i) out += sequence.asString();
            return out;
        }
        std::vector<Value> out;
        for (std::int64_t i = 0; i < times; ++i)
            out.insert(out.end(), sequence.items().begin(), sequence.items().end());
        return checked(Value::list(std::move(out)));
    }

    Value binaryOp(const std::string& op, const Value& a, const Value& b) {
        if (op == "~") {
            std::string s = str(a) + str(b);
            checkSize(s.size());
            return s;
        }
        const bool ints = isIntLike(a) && isIntLike(b);
        const bool numbers = isNumber(a) && isNumber(b);
        if (op == "+") {
            if (ints)
                return checkedInt(addOverflow, toInt(a), toInt(b));
            if (numbers)
                return toDouble(a) + toDouble(b);
            if (a.isString() && b.isString()) {
                checkSize(a.asString().size() + b.asString().size());
                return a.asString() + b.asString();
            }
            const bool tuple = a.isList() && ValueAccess::list(a)->isTuple;
            if (a.isList() && b.isList() && tuple == ValueAccess::list(b)->isTuple) {
                checkSize(a.items().size() + b.items().size());
                step(a.items().size() + b.items().size());
                std::vector<Value> out = a.items();
                out.insert(out.end(), b.items().begin(), b.items().end());
                return checked(tuple ? ValueAccess::makeTuple(std::move(out)) : Value::list(std::move(out)));
            }
        } else if (op == "-") {
            if (ints)
                return checkedInt(subOverflow, toInt(a), toInt(b));
            if (numbers)
                return toDouble(a) - toDouble(b);
        } else if (op == "*") {
            if (ints)
                return checkedInt(mulOverflow, toInt(a), toInt(b));
            if (numbers)
                return toDouble(a) * toDouble(b);
            if ((a.isString() || a.isList()) && isIntLike(b))
                return repeat(a, toInt(b));
            if ((b.isString() || b.isList()) && isIntLike(a))
                return repeat(b, toInt(a));
        } else if (numbers) {
            if (op == "**") {
                if (ints && toInt(b) >= 0) {
                    std::int64_t result = 1;
                    for (std::int64_t base = toInt(a), e = toInt(b); e > 0; e >>= 1) {
                        if (e & 1)
                            result = checkedInt(mulOverflow, result, base);
                        if (e > 1)
                            base = checkedInt(mulOverflow, base, base);
                    }
                    return result;
                }
                return std::pow(toDouble(a), toDouble(b));
            }
            if (ints ? toInt(b) == 0 : toDouble(b) == 0.0)
                fail(op == "%" ? "modulo by zero" : "division by zero");
            if (op == "/")
                return toDouble(a) / toDouble(b);
            if (ints) {
                const std::int64_t x = toInt(a), y = toInt(b);
                if (x == std::numeric_limits<std::int64_t>::min() && y == -1)
                    fail("integer overflow");
                std::int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) {  // Python floors
                    --q;
                    m += y;
                }
                return op == "//" ? q : m;
            }
            const double x = toDouble(a), y = toDouble(b);
            if (op == "//")
                return std::floor(x / y);
            double m = std::fmod(x, y);
            if (m != 0 && ((m < 0) != (y < 0)))
                m += y;
            return m;
        }
        operandError(op, a, b);
    }

    // ---- filters and tests ----

    std::size_t length(const Value& v) {
        switch (v.type()) {
            case Value::Type::Undefined:
                return 0;
            case Value::Type::String:
                return codePoints(v.asString()).size();
            case Value::Type::List:
                return v.items().size();
            case Value::Type::Map:
                if (!ValueAccess::map(v)->isNamespace)
                    return v.entries().size();
                break;
            default:
                break;
        }
        fail(std::string("object of type '") + typeName(v) + "' has no len()");
    }

    // `a.b.0` attribute paths of selectattr/map/sort (jinja2's make_attrgetter: item lookup per part).
    Value attributePath(const Value& object, const std::string& path) {
        Value v = object;
        std::size_t begin = 0;
        for (;;) {
            std::size_t dot = path.find('.', begin);
            std::string part = path.substr(begin, dot == std::string::npos ? std::string::npos : dot - begin);
            std::int64_t index = 0;
            auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), index);
            v = (ec == std::errc() && ptr == part.data() + part.size()) ? getItem(v, index) : getItem(v, part);
            if (dot == std::string::npos)
                return v;
            begin = dot + 1;
        }
    }

    Value applyFilter(const std::string& name, const Value& v, const Args& args) {
        if (name == "trim")
            return strip(str(v), optionalString(args.get(0, "chars")), true, true);
        if (name == "length" || name == "count")
            return static_cast<std::int64_t>(length(v));
        if (name == "string" || name == "safe")
            return name == "safe" ? v : Value(str(v));
        if (name == "upper")
            return upper(str(v));
        if (name == "lower")
            return lower(str(v));
        if (name == "title")
            return title(str(v));
        if (name == "capitalize")
            return capitalize(str(v));
        if (name == "tojson")
            return tojson(v, args);
        if (name == "default" || name == "d") {
            const bool boolean = truthy(args.getOr(1, "boolean", false));
            return v.isUndefined() || (boolean && !truthy(v)) ? args.getOr(0, "default_value", Value("")) : v;
        }
        if (name == "items") {
            if (v.isUndefined())
                return Value::list();
            if (!v.isMap())
                fail(std::string("items filter needs a mapping, got '") + typeName(v) + "'");
            return *callMethod(v, "items", {});
        }
        if (name == "list")
            return checked(Value::list(iterate(v)));
        if (name == "first" || name == "last") {
            std::vector<Value> items = iterate(v);
            return items.empty() ? Value() : name == "first" ? items.front() : items.back();
        }
        if (name == "reverse") {
            std::vector<Value> items = iterate(v);
            std::reverse(items.begin(), items.end());
            if (!v.isString())
                return Value::list(std::move(items));
            std::string out;
            for (const Value& c : items) out += c.asString();
            return out;
        }
        if (name == "join") {
            const std::string sep = optionalString(args.get(0, "d")).value_or("");
            const std::optional<std::string> attribute = optionalString(args.get(1, "attribute"));
            std::string out;
            bool first = true;
            for (const Value& item : iterate(v)) {
                if (!first)
                    out += sep;
                first = false;
                out += str(attribute ? attributePath(item, *attribute) : item);
                checkSize(out.size());
            }
            return out;
        }
        if (name == "replace")
            return replace(str(v), stringArg(args, 0, "old"), stringArg(args, 1, "new"),
                           toInt(args.getOr(2, "count", Value(-1))));
        if (name == "int" || name == "float")
            return convertNumber(name == "int", v, args);
        if (name == "abs") {
            if (!isNumber(v))
                fail(std::string("bad operand type for abs(): '") + typeName(v) + "'");
            if (v.type() == Value::Type::Float)
                return std::fabs(v.asFloat());
            if (toInt(v) == std::numeric_limits<std::int64_t>::min())
                fail("integer overflow");
            return std::abs(toInt(v));
        }
        if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr")
            return select(name, v, args);
        if (name == "map")
            return mapItems(v, args);
        if (name == "sort")
            return sort(v, args);
        if (name == "min" || name == "max") {
            Args sortArgs{{Value(name == "max")}, {}};
            sortArgs.keywords.emplace_back("case_sensitive", args.getOr(0, "case_sensitive", false));
            sortArgs.keywords.emplace_back("attribute", args.getOr(1, "attribute", Value()));
            Value sorted = sort(v, sortArgs);
            return sorted.items().empty() ? Value() : sorted.items().front();
        }
        if (name == "sum") {
            const std::optional<std::string> attribute = optionalString(args.get(0, "attribute"));
            Value total = args.getOr(1, "start", Value(0));
            for (const Value& item : iterate(v))
                total = binaryOp("+", total, attribute ? attributePath(item, *attribute) : item);
            return total;
        }
        fail("no filter named '" + name + "'");
    }

    Value tojson(const Value& v, const Args& args) {
        // transformers' signature: tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
        JsonOptions o;
        o.ensureAscii = truthy(args.getOr(0, "ensure_ascii", false));
        const Value indent = args.getOr(1, "indent", Value(nullptr));
        if (isIntLike(indent)) {
            o.hasIndent = true;
            o.indent.assign(static_cast<std::size_t>(std::clamp<std::int64_t>(toInt(indent), 0, 64)), ' ');
        } else if (indent.isString()) {
            o.hasIndent = true;
            o.indent = indent.asString();
        }
        o.itemSeparator = o.hasIndent ? "," : ", ";
        const Value separators = args.getOr(2, "separators", Value(nullptr));
        if (separators.isList()) {
            if (separators.items().size() != 2 || !separators.items()[0].isString() ||
                !separators.items()[1].isString())
                fail("tojson separators must be two strings");
            o.itemSeparator = separators.items()[0].asString();
            o.keySeparator = separators.items()[1].asString();
        }
        o.sortKeys = truthy(args.getOr(3, "sort_keys", false));
        return toJson(v, o, m_limits.maxOutputBytes);
    }

    Value convertNumber(bool toInteger, const Value& v, const Args& args) {
        const Value fallback = args.getOr(0, "default", toInteger ? Value(0) : Value(0.0));
        if (isNumber(v)) {
            if (!toInteger)
                return toDouble(v);
            if (isIntLike(v))
                return toInt(v);
            const double d = v.asFloat();
            if (!std::isfinite(d) || std::fabs(d) >= 9.2e18)
                return fallback;
            return static_cast<std::int64_t>(d);
        }
        if (!v.isString())
            return fallback;
        std::string s = strip(v.asString(), std::nullopt, true, true);
        s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
        if (!s.empty() && s[0] == '+')
            s.erase(0, 1);
        const char* end = s.data() + s.size();
        if (toInteger) {
            std::int64_t i = 0;
            auto res = std::from_chars(s.data(), end, i);
            return res.ec == std::errc() && res.ptr == end ? Value(i) : fallback;
        }
        double d = 0;
        auto res = std::from_chars(s.data(), end, d);
        return res.ec == std::errc() && res.ptr == end && !s.empty() ? Value(d) : fallback;
    }

    // select/reject(seq, test, args...) and selectattr/rejectattr(seq, attribute, test, args...).
    Value select(const std::string& name, const Value& v, const Args& args) {
        const bool byAttribute = name.ends_with("attr");
        const bool keep = name.starts_with("select");
        std::size_t next = 0;
        std::string attribute;
        if (byAttribute) {
            if (args.positional.empty() || !args.positional[0].isString())
                fail(name + " needs an attribute name");
            attribute = args.positional[next++].asString();
        }
        std::optional<std::string> test;
        if (next < args.positional.size()) {
            if (!args.positional[next].isString() || !isKnownTest(args.positional[next].asString()))
                fail(name + ": no test named " + repr(args.positional[next], 256));
            test = args.positional[next++].asString();
        }
        Args testArgs;
        testArgs.positional.assign(args.positional.begin() + static_cast<std::ptrdiff_t>(next), args.positional.end());
        std::vector<Value> out;
        for (const Value& item : iterate(v)) {
            const Value subject = byAttribute ? attributePath(item, attribute) : item;
            const bool passed = test ? applyTest(*test, subject, testArgs) : truthy(subject);
            if (passed == keep)
                out.push_back(item);
        }
        return Value::list(std::move(out));
    }

    // map(attribute="x", default=...) or map("filter", args...).
    Value mapItems(const Value& v, const Args& args) {
        std::vector<Value> out;
        if (const Value* attribute = args.get(std::numeric_limits<std::size_t>::max(), "attribute")) {
            if (!attribute->isString())
                fail("map: attribute must be a string");
            const Value fallback = args.getOr(std::numeric_limits<std::size_t>::max(), "default", Value());
            for (const Value& item : iterate(v)) {
                Value x = attributePath(item, attribute->asString());
                out.push_back(x.isUndefined() ? fallback : x);
            }
            return Value::list(std::move(out));
        }
        if (args.positional.empty() || !args.positional[0].isString() || !isKnownFilter(args.positional[0].asString()))
            fail("map needs a filter name or attribute=");
        Args filterArgs{{args.positional.begin() + 1, args.positional.end()}, args.keywords};
        for (const Value& item : iterate(v))
            out.push_back(applyFilter(args.positional[0].asString(), item, filterArgs));
        return Value::list(std::move(out));
    }

    // sort(reverse=False, case_sensitive=False, attribute=None), stable like Python's.
    Value sort(const Value& v, const Args& args) {
        const bool reverse = truthy(args.getOr(0, "reverse", false));
        const bool caseSensitive = truthy(args.getOr(1, "case_sensitive", false));
        const std::optional<std::string> attribute = optionalString(args.get(2, "attribute"));
        std::vector<std::pair<Value, Value>> keyed;  // (key, item)
        for (const Value& item : iterate(v)) {
            Value key = attribute ? attributePath(item, *attribute) : item;
            if (key.isString() && !caseSensitive)
                key = lower(key.asString());
            keyed.emplace_back(std::move(key), item);
        }
        std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
            return reverse ? less(b.first, a.first) : less(a.first, b.first);
        });
        std::vector<Value> out;
        for (auto& [key, item] : keyed) out.push_back(std::move(item));
        return Value::list(std::move(out));
    }

    bool sameAs(const Value& a, const Value& b) {
        if (a.type() != b.type())
            return false;
        if (a.isList())
            return ValueAccess::list(a) == ValueAccess::list(b);
        if (a.isMap())
            return ValueAccess::map(a) == ValueAccess::map(b);
        return equals(a, b);
    }

    bool applyTest(const std::string& name, const Value& v, const Args& args) {
        const Value* arg = args.get(0, "other");
        auto needArg = [&]() -> const Value& {
            if (!arg)
                fail("the test '" + name + "' needs an argument");
            return *arg;
        };
        const Value::Type t = v.type();
        if (name == "defined")
            return t != Value::Type::Undefined;
        if (name == "undefined")
            return t == Value::Type::Undefined;
        if (name == "none")
            return t == Value::Type::None;
        if (name == "boolean")
            return t == Value::Type::Bool;
        if (name == "true" || name == "false")
            return t == Value::Type::Bool && v.asBool() == (name == "true");
        if (name == "integer")
            return t == Value::Type::Int;
        if (name == "float")
            return t == Value::Type::Float;
        if (name == "number")
            return isNumber(v);
        if (name == "string")
            return t == Value::Type::String;
        if (name == "mapping")
            return t == Value::Type::Map && !ValueAccess::map(v)->isNamespace;
        if (name == "iterable")
            return t == Value::Type::String || t == Value::Type::List || t == Value::Type::Undefined ||
                   (t == Value::Type::Map && !ValueAccess::map(v)->isNamespace);
        if (name == "sequence")
            return t == Value::Type::String || t == Value::Type::List ||
                   (t == Value::Type::Map && !ValueAccess::map(v)->isNamespace);
        if (name == "callable")
            return t == Value::Type::Callable;
        if (name == "lower" || name == "upper") {
            if (!v.isString())
                return false;
            const std::string& s = v.asString();
            const bool anyCased = std::any_of(s.begin(), s.end(), isAsciiLetter);
            return anyCased && (name == "lower" ? lower(s) == s : upper(s) == s);
        }
        if (name == "odd" || name == "even" || name == "divisibleby") {
            if (!isIntLike(v) || (name == "divisibleby" && !isIntLike(needArg())))
                fail("the test '" + name + "' needs integers");
            const std::int64_t divisor = name == "divisibleby" ? toInt(*arg) : 2;
            if (divisor == 0)
                fail("modulo by zero");
            const bool divisible = divisor == -1 || toInt(v) % divisor == 0;
            return name == "odd" ? !divisible : divisible;
        }
        if (name == "sameas")
            return sameAs(v, needArg());
        if (name == "in")
            return contains(needArg(), v);
        static constexpr std::pair<std::string_view, std::string_view> kComparisons[] = {
            {"eq", "=="}, {"equalto", "=="},    {"==", "=="}, {"ne", "!="}, {"!=", "!="},
            {"lt", "<"},  {"lessthan", "<"},    {"<", "<"},   {"le", "<="}, {"<=", "<="},
            {"gt", ">"},  {"greaterthan", ">"}, {">", ">"},   {"ge", ">="}, {">=", ">="}};
        for (const auto& [test, op] : kComparisons)
            if (name == test)
                return compare(std::string(op), v, needArg());
        fail("no test named '" + name + "'");
    }

    const Program& m_program;
    const ChatRenderInput& m_input;
    const RenderLimits m_limits;
    std::vector<Frame> m_frames;  // [0]: globals and template variables; one more per loop iteration
    std::uint64_t m_steps = 0;
    int m_macroDepth = 0;
    int m_evalDepth = 0;
    std::uint32_t m_at = 0;  // offset of the node being evaluated, for error messages
};

}  // namespace

bool isKnownFilter(std::string_view name) {
    return contains(kFilters, name);
}
bool isKnownTest(std::string_view name) {
    return contains(kTests, name);
}

std::string renderProgram(const Program& program, const ChatRenderInput& input) {
    return Interpreter(program, input).run();
}

}  // namespace inference::jinja
