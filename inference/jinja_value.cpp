// Template values: storage, Python's truth, str(), repr() and json.dumps().
#include <algorithm>
#include <cassert>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "jinja.h"

namespace inference {

// ---- Value ---------------------------------------------------------------------------------------------------------

Value Value::list(std::vector<Value> items) {
    Value v;
    v.m_v = std::make_shared<ListData>();
    for (const Value& item : items) v.absorb(item);
    std::get<std::shared_ptr<ListData>>(v.m_v)->items = std::move(items);
    return v;
}

Value Value::map(Entries entries) {
    Value v;
    v.m_v = std::make_shared<MapData>();
    for (auto& [key, value] : entries)
        v.set(std::move(key), std::move(value));  // later duplicates win, like a Python dict literal
    return v;
}

bool Value::asBool() const {
    return std::get<bool>(m_v);
}
std::int64_t Value::asInt() const {
    return std::get<std::int64_t>(m_v);
}
double Value::asFloat() const {
    return std::get<double>(m_v);
}
const std::string& Value::asString() const {
    return std::get<std::string>(m_v);
}
const std::vector<Value>& Value::items() const {
    return std::get<std::shared_ptr<ListData>>(m_v)->items;
}
const Value::Entries& Value::entries() const {
    return std::get<std::shared_ptr<MapData>>(m_v)->entries;
}

const Value* Value::find(std::string_view key) const {
    for (const auto& [k, v] : entries())
        if (k == key)
            return &v;
    return nullptr;
}

void Value::absorb(const Value& child) {
    const bool childHolds = ValueAccess::holdsNamespace(child);
    if (auto* l = std::get_if<std::shared_ptr<ListData>>(&m_v)) {
        (*l)->depth = std::max((*l)->depth, child.depth() + 1);
        (*l)->holdsNamespace |= childHolds;
    } else if (auto* m = std::get_if<std::shared_ptr<MapData>>(&m_v)) {
        (*m)->depth = std::max((*m)->depth, child.depth() + 1);
        (*m)->holdsNamespace |= childHolds;
    }
}

void Value::set(std::string key, Value value) {
    absorb(value);
    MapData& data = *std::get<std::shared_ptr<MapData>>(m_v);
    for (auto& [k, v] : data.entries) {
        if (k == key) {
            v = std::move(value);
            return;
        }
    }
    data.entries.emplace_back(std::move(key), std::move(value));
}

void Value::append(Value value) {
    absorb(value);
    std::get<std::shared_ptr<ListData>>(m_v)->items.push_back(std::move(value));
}

std::uint32_t Value::depth() const {
    if (auto* l = std::get_if<std::shared_ptr<ListData>>(&m_v))
        return (*l)->depth;
    if (auto* m = std::get_if<std::shared_ptr<MapData>>(&m_v))
        return (*m)->depth;
    return 0;
}

Value::ListData* ValueAccess::list(const Value& v) {
    auto* p = std::get_if<std::shared_ptr<Value::ListData>>(&v.m_v);
    return p ? p->get() : nullptr;
}

Value::MapData* ValueAccess::map(const Value& v) {
    auto* p = std::get_if<std::shared_ptr<Value::MapData>>(&v.m_v);
    return p ? p->get() : nullptr;
}

const jinja::Callable* ValueAccess::callable(const Value& v) {
    auto* p = std::get_if<std::shared_ptr<const jinja::Callable>>(&v.m_v);
    return p ? p->get() : nullptr;
}

Value ValueAccess::makeCallable(std::shared_ptr<const jinja::Callable> c) {
    Value v;
    v.m_v = std::move(c);
    return v;
}

Value ValueAccess::makeTuple(std::vector<Value> items) {
    Value v = Value::list(std::move(items));
    list(v)->isTuple = true;
    return v;
}

bool ValueAccess::holdsNamespace(const Value& v) {
    if (const Value::MapData* m = map(v))
        return m->isNamespace || m->holdsNamespace;
    const Value::ListData* l = list(v);
    return l && l->holdsNamespace;
}

Value ValueAccess::makeNamespace(Value::Entries entries) {
    Value v = Value::map(std::move(entries));
    map(v)->isNamespace = true;
    return v;
}

namespace jinja {

// ---- UTF-8 ---------------------------------------------------------------------------------------------------------

namespace {

// Length of the UTF-8 sequence starting at s[i]; an invalid or truncated sequence counts as 1 byte.
std::size_t sequenceLength(std::string_view s, std::size_t i) {
    const auto b = static_cast<unsigned char>(s[i]);
    std::size_t n = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 1;
    if (i + n > s.size())
        return 1;
    for (std::size_t k = 1; k < n; ++k)
        if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80)
            return 1;
    return n;
}

// The code point of a sequence from codePoints(); an invalid byte decodes to itself.
char32_t decode(std::string_view cp) {
    const auto b0 = static_cast<unsigned char>(cp[0]);
    if (cp.size() == 1)
        return b0;
    char32_t c = cp.size() == 2 ? (b0 & 0x1F) : cp.size() == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    for (std::size_t k = 1; k < cp.size(); ++k) c = (c << 6) | (static_cast<unsigned char>(cp[k]) & 0x3F);
    return c;
}

}  // namespace

std::vector<std::string_view> codePoints(std::string_view s) {
    std::vector<std::string_view> out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size();) {
        std::size_t n = sequenceLength(s, i);
        out.push_back(s.substr(i, n));
        i += n;
    }
    return out;
}

// Python's str.isspace() for one code point.
bool isPySpace(std::string_view codePoint) {
    char32_t c = decode(codePoint);
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

// ---- Python semantics ----------------------------------------------------------------------------------------------

const char* typeName(const Value& v) {
    switch (v.type()) {
        case Value::Type::Undefined:
            return "Undefined";
        case Value::Type::None:
            return "NoneType";
        case Value::Type::Bool:
            return "bool";
        case Value::Type::Int:
            return "int";
        case Value::Type::Float:
            return "float";
        case Value::Type::String:
            return "str";
        case Value::Type::List:
            return ValueAccess::list(v)->isTuple ? "tuple" : "list";
        case Value::Type::Map:
            return ValueAccess::map(v)->isNamespace ? "Namespace" : "dict";
        case Value::Type::Callable:
            return "function";
    }
    return "object";
}

bool truthy(const Value& v) {
    switch (v.type()) {
        case Value::Type::Undefined:
        case Value::Type::None:
            return false;
        case Value::Type::Bool:
            return v.asBool();
        case Value::Type::Int:
            return v.asInt() != 0;
        case Value::Type::Float:
            return v.asFloat() != 0.0;
        case Value::Type::String:
            return !v.asString().empty();
        case Value::Type::List:
            return !v.items().empty();
        case Value::Type::Map:
            return ValueAccess::map(v)->isNamespace || !v.entries().empty();
        case Value::Type::Callable:
            return true;
    }
    return false;
}

// Python's repr(float): the shortest round-trip digits, fixed notation for exponents in [-4, 16), else scientific.
std::string formatFloat(double d) {
    if (std::isnan(d))
        return "nan";
    if (std::isinf(d))
        return d < 0 ? "-inf" : "inf";
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
    std::string_view sci(buf, static_cast<std::size_t>(res.ptr - buf));  // e.g. "-1.2345e+17"
    std::string sign;
    if (sci.front() == '-') {
        sign = "-";
        sci.remove_prefix(1);
    }
    std::size_t ePos = sci.find('e');
    std::string digits;
    for (char c : sci.substr(0, ePos))
        if (c != '.')
            digits += c;
    int exponent = 0;
    std::from_chars(sci.data() + ePos + (sci[ePos + 1] == '+' ? 2 : 1), sci.data() + sci.size(), exponent);
    while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
    const int n = static_cast<int>(digits.size());
    const int decpt = exponent + 1;  // position of the decimal point relative to the digits
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0)
            return sign + "0." + std::string(static_cast<std::size_t>(-decpt), '0') + digits;
        if (decpt >= n)
            return sign + digits + std::string(static_cast<std::size_t>(decpt - n), '0') + ".0";
        return sign + digits.substr(0, static_cast<std::size_t>(decpt)) + "." +
               digits.substr(static_cast<std::size_t>(decpt));
    }
    std::string out = sign + digits.substr(0, 1);
    if (n > 1)
        out += "." + digits.substr(1);
    char expBuf[16];
    std::snprintf(expBuf, sizeof expBuf, "e%c%02d", exponent < 0 ? '-' : '+', std::abs(exponent));
    return out + expBuf;
}

namespace {

// Appends and enforces a size limit, so that printing a value that shares sub-lists cannot blow up.
class Writer {
public:
    explicit Writer(std::size_t maxBytes) : m_max(maxBytes) {}
    void put(std::string_view s) {
        if (m_out.size() + s.size() > m_max)
            throw Failure{"a value is too large to print (limit " + std::to_string(m_max) + " bytes)"};
        m_out += s;
    }
    std::string take() { return std::move(m_out); }

private:
    std::string m_out;
    std::size_t m_max;
};

// Python str.isprintable(), approximated: controls, separators other than space and common format characters.
bool isPrintable(char32_t c) {
    return !(c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD || c == 0x1680 || (c >= 0x2000 && c <= 0x200F) ||
             (c >= 0x2028 && c <= 0x202F) || (c >= 0x205F && c <= 0x2064) || c == 0x3000 || c == 0xFEFF);
}

void reprString(Writer& w, std::string_view s) {
    const bool hasSingle = s.find('\'') != std::string_view::npos;
    const char quote = hasSingle && s.find('"') == std::string_view::npos ? '"' : '\'';
    std::string out(1, quote);
    for (std::string_view cp : codePoints(s)) {
        char32_t c = decode(cp);
        char buf[16];
        if (c == static_cast<char32_t>(quote) || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (!isPrintable(c)) {
            std::snprintf(buf, sizeof buf,
                          c < 0x100     ? "\\x%02x"
                          : c < 0x10000 ? "\\u%04x"
                                        : "\\U%08x",
                          static_cast<unsigned>(c));
            out += buf;
        } else {
            out += cp;
        }
    }
    out += quote;
    w.put(out);
}

void writeRepr(Writer& w, const Value& v) {
    switch (v.type()) {
        case Value::Type::String:
            reprString(w, v.asString());
            return;
        case Value::Type::List: {
            const bool tuple = ValueAccess::list(v)->isTuple;
            w.put(tuple ? "(" : "[");
            bool first = true;
            for (const Value& item : v.items()) {
                w.put(first ? "" : ", ");
                first = false;
                writeRepr(w, item);
            }
            w.put(!tuple ? "]" : v.items().size() == 1 ? ",)" : ")");
            return;
        }
        case Value::Type::Map: {
            const bool ns = ValueAccess::map(v)->isNamespace;
            w.put(ns ? "<Namespace {" : "{");
            bool first = true;
            for (const auto& [key, item] : v.entries()) {
                w.put(first ? "" : ", ");
                first = false;
                reprString(w, key);
                w.put(": ");
                writeRepr(w, item);
            }
            w.put(ns ? "}>" : "}");
            return;
        }
        default:
            w.put(toStr(v));
            return;
    }
}

void jsonString(Writer& w, std::string_view s, bool ensureAscii) {
    std::string out = "\"";
    for (std::string_view cp : codePoints(s)) {
        char32_t c = decode(cp);
        char buf[16];
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            case '\b':
                out += "\\b";
                break;
            case '\f':
                out += "\\f";
                break;
            default:
                if (c < 0x20 || (ensureAscii && c >= 0x7F)) {
                    if (c >= 0x10000) {  // a surrogate pair, as Python writes it
                        char32_t u = c - 0x10000;
                        std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (u >> 10)),
                                      static_cast<unsigned>(0xDC00 + (u & 0x3FF)));
                    } else {
                        std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
                    }
                    out += buf;
                } else {
                    out += cp;
                }
        }
    }
    out += '"';
    w.put(out);
}

void writeJson(Writer& w, const Value& v, const JsonOptions& o, int level) {
    auto newline = [&](int lvl) {
        if (!o.hasIndent)
            return;
        w.put("\n");
        for (int i = 0; i < lvl; ++i) w.put(o.indent);
    };
    switch (v.type()) {
        case Value::Type::None:
            w.put("null");
            return;
        case Value::Type::Bool:
            w.put(v.asBool() ? "true" : "false");
            return;
        case Value::Type::Int:
            w.put(std::to_string(v.asInt()));
            return;
        case Value::Type::Float: {
            double d = v.asFloat();
            w.put(std::isnan(d) ? "NaN" : std::isinf(d) ? (d < 0 ? "-Infinity" : "Infinity") : formatFloat(d));
            return;
        }
        case Value::Type::String:
            jsonString(w, v.asString(), o.ensureAscii);
            return;
        case Value::Type::List: {
            if (v.items().empty()) {
                w.put("[]");
                return;
            }
            w.put("[");
            bool first = true;
            for (const Value& item : v.items()) {
                if (!first)
                    w.put(o.itemSeparator);
                first = false;
                newline(level + 1);
                writeJson(w, item, o, level + 1);
            }
            newline(level);
            w.put("]");
            return;
        }
        case Value::Type::Map: {
            if (ValueAccess::map(v)->isNamespace)
                break;
            if (v.entries().empty()) {
                w.put("{}");
                return;
            }
            std::vector<const std::pair<std::string, Value>*> entries;
            for (const auto& e : v.entries()) entries.push_back(&e);
            if (o.sortKeys)
                std::stable_sort(entries.begin(), entries.end(), [](auto* a, auto* b) { return a->first < b->first; });
            w.put("{");
            bool first = true;
            for (const auto* e : entries) {
                if (!first)
                    w.put(o.itemSeparator);
                first = false;
                newline(level + 1);
                jsonString(w, e->first, o.ensureAscii);
                w.put(o.keySeparator);
                writeJson(w, e->second, o, level + 1);
            }
            newline(level);
            w.put("}");
            return;
        }
        default:
            break;
    }
    throw Failure{std::string("Object of type ") + typeName(v) + " is not JSON serializable"};
}

}  // namespace

std::string toStr(const Value& v, std::size_t maxBytes) {
    switch (v.type()) {
        case Value::Type::Undefined:
            return {};
        case Value::Type::None:
            return "None";
        case Value::Type::Bool:
            return v.asBool() ? "True" : "False";
        case Value::Type::Int:
            return std::to_string(v.asInt());
        case Value::Type::Float:
            return formatFloat(v.asFloat());
        case Value::Type::String:
            return v.asString();
        case Value::Type::Callable: {
            const Callable* c = ValueAccess::callable(v);
            return c->macro ? "<Macro '" + c->name + "'>" : "<function " + c->name + ">";
        }
        case Value::Type::List:
        case Value::Type::Map:
            return repr(v, maxBytes);
    }
    return {};
}

std::string repr(const Value& v, std::size_t maxBytes) {
    if (v.type() == Value::Type::Undefined)
        return "Undefined";
    Writer w(maxBytes);
    writeRepr(w, v);
    return w.take();
}

std::string toJson(const Value& v, const JsonOptions& options, std::size_t maxBytes) {
    Writer w(maxBytes);
    writeJson(w, v, options, 0);
    return w.take();
}

}  // namespace jinja
}  // namespace inference
