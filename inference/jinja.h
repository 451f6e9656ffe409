// Internals of the chat-template renderer (inference/chat_template.h): value storage, the syntax tree, the parser
// and the interpreter. Parser and interpreter report problems by throwing jinja::Failure, which never leaves the
// library: ChatTemplate::parse/render turn it into an Error.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "inference/chat_template.h"

namespace inference {

struct Value::ListData {
    std::vector<Value> items;
    std::uint32_t depth = 1;
    bool holdsNamespace = false;  // some item is or holds a namespace
    bool isTuple = false;         // a Python tuple: prints as (a, b) and never equals a list
};

struct Value::MapData {
    Entries entries;
    std::uint32_t depth = 1;
    bool holdsNamespace = false;
    bool isNamespace = false;  // made by namespace(): the only object `set ns.attr = ...` may change
};

// The renderer's view of list/map storage.
struct ValueAccess {
    static Value::ListData* list(const Value& v);  // nullptr unless a list
    static Value::MapData* map(const Value& v);    // nullptr unless a map
    static const jinja::Callable* callable(const Value& v);
    static Value makeCallable(std::shared_ptr<const jinja::Callable> c);
    static Value makeNamespace(Value::Entries entries);
    static Value makeTuple(std::vector<Value> items);
    // Whether `v` is or contains a namespace; keeping namespaces out of namespaces keeps values acyclic.
    static bool holdsNamespace(const Value& v);
};

namespace jinja {

struct Failure {
    std::string message;
};

struct Stmt;

// A built-in global function ("range", "namespace", "dict", "raise_exception", "strftime_now", loop "cycle") or a
// macro (a Macro statement of the program being rendered, which outlives the call).
struct Callable {
    std::string name;
    const Stmt* macro = nullptr;
};

// ---- values as Python sees them ---------------------------------------------------------------------------------

const char* typeName(const Value& v);  // Python's type name: "str", "int", "dict", ...
bool truthy(const Value& v);
std::string formatFloat(double d);  // Python's repr(float)
// Python's str(): undefined prints as "", strings as themselves, containers as their repr.
// maxBytes bounds the result (Failure when exceeded): shared sub-lists could otherwise print exponentially large.
std::string toStr(const Value& v, std::size_t maxBytes = SIZE_MAX);
std::string repr(const Value& v, std::size_t maxBytes = SIZE_MAX);

struct JsonOptions {
    std::string indent;  // json.dumps(indent=...) as a string; used when hasIndent
    bool hasIndent = false;
    std::string itemSeparator = ", ";
    std::string keySeparator = ": ";
    bool ensureAscii = false;
    bool sortKeys = false;
};
// Python's json.dumps; throws Failure for values JSON cannot hold (undefined, functions).
std::string toJson(const Value& v, const JsonOptions& options, std::size_t maxBytes = SIZE_MAX);

// UTF-8 helpers: strings are handled per code point like Python's str (an invalid byte counts as one code point).
std::vector<std::string_view> codePoints(std::string_view s);
bool isPySpace(std::string_view codePoint);

// ---- syntax tree ---------------------------------------------------------------------------------------------------

struct Expr;
struct Stmt;
using ExprPtr = std::unique_ptr<Expr>;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class ExprKind {
    Literal,      // literal
    Name,         // name
    List,         // args
    Tuple,        // args
    Dict,         // args: key, value, key, value, ...
    GetAttr,      // args[0].name
    GetItem,      // args[0][args[1]]
    Slice,        // args[0][args[1]:args[2]:args[3]], missing parts are null
    Call,         // args[0](args[1:], kwargs)
    Filter,       // args[0] | name(args[1:], kwargs)
    Test,         // args[0] is [not] name(args[1:])
    Not,          // not args[0]
    Negate,       // -args[0]
    Plus,         // +args[0]
    Binary,       // args[0] name args[1], name one of + - * / // % ** ~
    And,          // args[0] and args[1]
    Or,           // args[0] or args[1]
    Compare,      // args[0] ops[0] args[1] ops[1] args[2] ...
    Conditional,  // args[0] if args[1] else args[2] (args[2] may be null)
};

struct Expr {
    ExprKind kind = ExprKind::Literal;
    std::uint32_t offset = 0;  // byte offset in the (newline-normalised) source, for messages
    Value literal;
    std::string name;
    std::vector<ExprPtr> args;
    std::vector<std::pair<std::string, ExprPtr>> kwargs;
    std::vector<std::string> ops;
    bool negated = false;
};

enum class StmtKind { Text, Print, If, For, Set, SetBlock, Break, Continue, Macro };

struct Stmt {
    StmtKind kind = StmtKind::Text;
    std::uint32_t offset = 0;
    std::string text;                  // Text
    std::vector<std::string> targets;  // For / Set / SetBlock: names to bind (unpacking when several); Macro: name
    std::string attribute;             // Set: `set targets[0].attribute = ...` on a namespace
    ExprPtr expr;                      // Print, Set: the value; For: the iterable
    ExprPtr filter;                    // For: `for x in y if filter`
    std::vector<std::pair<ExprPtr, Body>> branches;       // If: (condition, body); the else branch has no condition
    std::vector<std::pair<std::string, ExprPtr>> params;  // Macro: parameters with their defaults (or null)
    Body body;                                            // For, SetBlock, Macro
    Body elseBody;                                        // For: runs when nothing was iterated
};

struct Program {
    std::string name;
    std::string source;      // as given
    std::string normalized;  // newlines normalised, as the offsets count
    Body body;
    std::string lineColumn(std::uint32_t offset) const;  // "line L, column C"
};

bool isKnownFilter(std::string_view name);
bool isKnownTest(std::string_view name);

// Throws Failure with "line L, column C: ..." on a syntax error.
void parseProgram(Program& program);

// Renders `program` with `input`; throws Failure on errors.
std::string renderProgram(const Program& program, const ChatRenderInput& input);

}  // namespace jinja
}  // namespace inference
