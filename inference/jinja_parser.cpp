// Chat-template lexer and parser: Jinja2 syntax with trim_blocks and lstrip_blocks, following the token rules of
// jinja2/lexer.py and the grammar and operator precedence of jinja2/parser.py (3.1).
#include <algorithm>
#include <charconv>
#include <initializer_list>

#include "jinja.h"

namespace inference::jinja {

std::string Program::lineColumn(std::uint32_t offset) const {
    std::size_t end = std::min<std::size_t>(offset, normalized.size());
    std::size_t line = 1 + static_cast<std::size_t>(std::count(
                               normalized.begin(), normalized.begin() + static_cast<std::ptrdiff_t>(end), '\n'));
    std::size_t lineStart = normalized.rfind('\n', end == 0 ? 0 : end - 1);
    std::size_t column = (lineStart == std::string::npos || end == 0) ? end + 1 : end - lineStart;
    return "line " + std::to_string(line) + ", column " + std::to_string(column);
}

namespace {

// Deep nesting would exhaust the stack of the recursive-descent parser and of the interpreter.
constexpr int kMaxNesting = 100;

enum class Tok { Data, BlockBegin, BlockEnd, VarBegin, VarEnd, Name, String, Int, Float, Op, Eof };

struct Token {
    Tok kind = Tok::Eof;
    std::uint32_t offset = 0;
    std::string text;  // Data text, name, operator, or the unescaped string
    Value number;      // Int / Float
};

std::string encodeUtf8(char32_t c) {
    std::string s;
    if (c < 0x80) {
        s += static_cast<char>(c);
    } else if (c < 0x800) {
        s += static_cast<char>(0xC0 | (c >> 6));
        s += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        s += static_cast<char>(0xE0 | (c >> 12));
        s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (c & 0x3F));
    } else {
        s += static_cast<char>(0xF0 | (c >> 18));
        s += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
        s += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (c & 0x3F));
    }
    return s;
}

bool isDigit(char c) {
    return c >= '0' && c <= '9';
}
bool isNameStart(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool isNameChar(char c) {
    return isNameStart(c) || isDigit(c);
}

// ---- lexer -------------------------------------------------------------------------------------------------------

class Lexer {
public:
    explicit Lexer(const Program& program) : m_program(program), m_src(program.normalized) {}

    std::vector<Token> run() {
        while (m_pos < m_src.size()) {
            std::size_t tag = findTagStart(m_pos);
            if (tag == std::string_view::npos) {
                emitData(m_src.substr(m_pos));
                break;
            }
            const char kind = m_src[tag + 1];
            std::size_t p = tag + 2;
            const char sign = p < m_src.size() && (m_src[p] == '-' || m_src[p] == '+') ? m_src[p] : 0;
            if (sign)
                ++p;
            emitData(leftStrip(m_src.substr(m_pos, tag - m_pos), sign, kind != '{'));
            if (kind == '#')
                lexComment(tag, p);
            else if (std::size_t rawEnd = 0; kind == '%' && matchRawBegin(p, rawEnd))
                lexRaw(tag, rawEnd);
            else
                lexTag(kind == '%', tag, p);
        }
        m_tokens.push_back(Token{Tok::Eof, static_cast<std::uint32_t>(m_src.size()), {}, {}});
        return std::move(m_tokens);
    }

private:
    [[noreturn]] void fail(std::size_t offset, const std::string& what) const {
        throw Failure{m_program.lineColumn(static_cast<std::uint32_t>(offset)) + ": " + what};
    }

    bool startsWith(std::size_t p, std::string_view s) const { return m_src.substr(p, s.size()) == s; }

    std::size_t findTagStart(std::size_t from) const {
        for (std::size_t j = m_src.find('{', from); j != std::string_view::npos; j = m_src.find('{', j + 1)) {
            if (j + 1 < m_src.size() && (m_src[j + 1] == '{' || m_src[j + 1] == '%' || m_src[j + 1] == '#'))
                return j;
        }
        return std::string_view::npos;
    }

    // Python's regex \s* (Unicode whitespace).
    std::size_t skipSpace(std::size_t p) const {
        while (p < m_src.size()) {
            std::string_view cp = codePoints(m_src.substr(p, 4)).front();
            if (!isPySpace(cp))
                break;
            p += cp.size();
        }
        return p;
    }

    // Text before a tag: `{%-` strips all whitespace before it; with lstrip_blocks, a block or comment tag that
    // is preceded on its line by spaces and tabs only takes them away (jinja2's OptionalLStrip).
    std::string_view leftStrip(std::string_view text, char sign, bool blockOrComment) const {
        if (sign == '-') {
            std::vector<std::string_view> cps = codePoints(text);
            std::size_t n = text.size();
            while (!cps.empty() && isPySpace(cps.back())) {
                n -= cps.back().size();
                cps.pop_back();
            }
            return text.substr(0, n);
        }
        if (sign == '+' || !blockOrComment)
            return text;
        std::size_t nl = text.rfind('\n');
        std::size_t lineStart = nl == std::string_view::npos ? 0 : nl + 1;
        if ((lineStart > 0 || m_lineStarting) && text.find_first_not_of(" \t", lineStart) == std::string_view::npos)
            return text.substr(0, lineStart);
        return text;
    }

    void emitData(std::string_view text) {
        if (!text.empty())
            m_tokens.push_back(
                Token{Tok::Data, static_cast<std::uint32_t>(text.data() - m_src.data()), std::string(text), {}});
    }

    // After a block or comment end marker at `p` (just past "%}" / "#}"), marked by the character before it:
    // '-' strips following whitespace, '+' keeps it, otherwise trim_blocks removes one newline.
    void finishTag(std::size_t p, char marker) {
        if (marker == '-')
            p = skipSpace(p);
        else if (marker != '+' && p < m_src.size() && m_src[p] == '\n')
            ++p;
        m_lineStarting = m_src[p - 1] == '\n';
        m_pos = p;
    }

    void lexComment(std::size_t tag, std::size_t p) {
        std::size_t end = m_src.find("#}", p);
        if (end == std::string_view::npos)
            fail(tag, "unclosed comment, expected '#}'");
        const char marker = end > p && (m_src[end - 1] == '-' || m_src[end - 1] == '+') ? m_src[end - 1] : 0;
        finishTag(end + 2, marker);
    }

    // `{% raw %}` (jinja2 applies no trim_blocks after it).
    bool matchRawBegin(std::size_t p, std::size_t& end) const {
        p = skipSpace(p);
        if (!startsWith(p, "raw"))
            return false;
        p = skipSpace(p + 3);
        if (startsWith(p, "-%}")) {
            end = skipSpace(p + 3);
            return true;
        }
        if (startsWith(p, "%}")) {
            end = p + 2;
            return true;
        }
        return false;
    }

    void lexRaw(std::size_t tag, std::size_t bodyStart) {
        m_lineStarting = m_src[bodyStart - 1] == '\n';
        for (std::size_t k = m_src.find("{%", bodyStart); k != std::string_view::npos; k = m_src.find("{%", k + 1)) {
            std::size_t p = k + 2;
            const char sign = p < m_src.size() && (m_src[p] == '-' || m_src[p] == '+') ? m_src[p] : 0;
            p = skipSpace(p + (sign ? 1 : 0));
            if (!startsWith(p, "endraw"))
                continue;
            p = skipSpace(p + 6);
            char marker = 0;
            if (startsWith(p, "-%}") || startsWith(p, "+%}"))
                marker = m_src[p++];
            else if (!startsWith(p, "%}"))
                continue;
            emitData(leftStrip(m_src.substr(bodyStart, k - bodyStart), sign, true));
            finishTag(p + 2, marker);
            return;
        }
        fail(tag, "unclosed raw block, expected '{% endraw %}'");
    }

    void lexTag(bool block, std::size_t tag, std::size_t p) {
        m_tokens.push_back(Token{block ? Tok::BlockBegin : Tok::VarBegin, static_cast<std::uint32_t>(tag), {}, {}});
        std::string brackets;  // open brackets: end markers inside them are operators (jinja2's balancing)
        for (;;) {
            p = skipSpace(p);
            if (p >= m_src.size())
                fail(tag, block ? "unclosed tag, expected '%}'" : "unclosed tag, expected '}}'");
            if (brackets.empty()) {
                const std::string_view close = block ? "%}" : "}}";
                char marker = 0;
                if (startsWith(p, std::string("-").append(close)) || (block && startsWith(p, "+%}")))
                    marker = m_src[p];
                if (marker || startsWith(p, close)) {
                    m_tokens.push_back(
                        Token{block ? Tok::BlockEnd : Tok::VarEnd, static_cast<std::uint32_t>(p), {}, {}});
                    // Variable tags never take trim_blocks' newline.
                    finishTag(p + (marker ? 3 : 2), marker ? marker : block ? 0 : '+');
                    return;
                }
            }
            p = lexToken(p, brackets);
        }
    }

    std::size_t scanDigits(std::size_t p) const {  // (\d+_)*\d+
        std::size_t q = p;
        while (q < m_src.size() &&
               (isDigit(m_src[q]) || (m_src[q] == '_' && q > p && q + 1 < m_src.size() && isDigit(m_src[q + 1]))))
            ++q;
        return q;
    }

    std::size_t lexToken(std::size_t p, std::string& brackets) {
        Token t;
        t.offset = static_cast<std::uint32_t>(p);
        const char c = m_src[p];
        std::size_t q = p;
        if (isDigit(c)) {
            q = scanDigits(p);
            bool isFloat = false;
            if (q + 1 < m_src.size() && m_src[q] == '.' && isDigit(m_src[q + 1])) {
                q = scanDigits(q + 1);
                isFloat = true;
            }
            if (q < m_src.size() && (m_src[q] == 'e' || m_src[q] == 'E')) {
                std::size_t e = q + 1;
                if (e < m_src.size() && (m_src[e] == '+' || m_src[e] == '-'))
                    ++e;
                if (std::size_t end = scanDigits(e); end > e) {
                    q = end;
                    isFloat = true;
                }
            }
            std::string digits;
            for (char d : m_src.substr(p, q - p))
                if (d != '_')
                    digits += d;
            if (isFloat) {
                double d = 0;
                std::from_chars(digits.data(), digits.data() + digits.size(), d);
                t.kind = Tok::Float;
                t.number = d;
            } else {
                std::int64_t n = 0;
                if (std::from_chars(digits.data(), digits.data() + digits.size(), n).ec != std::errc())
                    fail(p, "integer literal too large");
                t.kind = Tok::Int;
                t.number = n;
            }
        } else if (isNameStart(c)) {
            while (q < m_src.size() && isNameChar(m_src[q])) ++q;
            t.kind = Tok::Name;
            t.text = std::string(m_src.substr(p, q - p));
        } else if (c == '\'' || c == '"') {
            q = p + 1;
            while (q < m_src.size() && m_src[q] != c) q += m_src[q] == '\\' ? 2 : 1;
            if (q >= m_src.size())
                fail(p, "unterminated string literal");
            t.kind = Tok::String;
            t.text = unescape(p + 1, q);
            ++q;
        } else {
            static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", "<=", ">="};
            const auto two = std::find(std::begin(kTwo), std::end(kTwo), m_src.substr(p, 2));
            if (two != std::end(kTwo)) {
                q = p + 2;
            } else if (std::string_view("+-*/%~()[]{},.:|=<>;").find(c) != std::string_view::npos) {
                q = p + 1;
            } else {
                fail(p, "unexpected character '" + std::string(codePoints(m_src.substr(p, 4)).front()) + "'");
            }
            t.kind = Tok::Op;
            t.text = std::string(m_src.substr(p, q - p));
            if (c == '(' || c == '[' || c == '{') {
                brackets += c;
            } else if (c == ')' || c == ']' || c == '}') {
                const char open = c == ')' ? '(' : c == ']' ? '[' : '{';
                if (brackets.empty())
                    fail(p, "unexpected '" + t.text + "'");
                if (brackets.back() != open) {
                    const char expected = brackets.back() == '(' ? ')' : brackets.back() == '[' ? ']' : '}';
                    fail(p, "unexpected '" + t.text + "', expected '" + std::string(1, expected) + "'");
                }
                brackets.pop_back();
            }
        }
        m_tokens.push_back(std::move(t));
        return q;
    }

    // Python's unicode-escape decoding of a string literal's body [begin, end).
    std::string unescape(std::size_t begin, std::size_t end) const {
        std::string out;
        for (std::size_t i = begin; i < end; ++i) {
            if (m_src[i] != '\\' || i + 1 >= end) {
                out += m_src[i];
                continue;
            }
            const char n = m_src[++i];
            auto hex = [&](std::size_t digits) {
                std::uint32_t v = 0;
                if (i + digits >= end ||
                    std::from_chars(m_src.data() + i + 1, m_src.data() + i + 1 + digits, v, 16).ptr !=
                        m_src.data() + i + 1 + digits)
                    fail(i - 1, "truncated \\" + std::string(1, n) + " escape");
                if (v > 0x10FFFF)
                    fail(i - 1, "escape outside the Unicode range");
                i += digits;
                out += encodeUtf8(v);
            };
            switch (n) {
                case '\n':
                    break;  // line continuation
                case '\\':
                    out += '\\';
                    break;
                case '\'':
                    out += '\'';
                    break;
                case '"':
                    out += '"';
                    break;
                case 'a':
                    out += '\a';
                    break;
                case 'b':
                    out += '\b';
                    break;
                case 'f':
                    out += '\f';
                    break;
                case 'n':
                    out += '\n';
                    break;
                case 'r':
                    out += '\r';
                    break;
                case 't':
                    out += '\t';
                    break;
                case 'v':
                    out += '\v';
                    break;
                case 'x':
                    hex(2);
                    break;
                case 'u':
                    hex(4);
                    break;
                case 'U':
                    hex(8);
                    break;
                default:
                    if (n >= '0' && n <= '7') {
                        std::uint32_t v = 0;
                        std::size_t k = 0;
                        for (; k < 3 && i + k < end && m_src[i + k] >= '0' && m_src[i + k] <= '7'; ++k)
                            v = v * 8 + static_cast<std::uint32_t>(m_src[i + k] - '0');
                        i += k - 1;
                        out += encodeUtf8(v);
                    } else {  // unknown escapes stay as written
                        out += '\\';
                        out += n;
                    }
            }
        }
        return out;
    }

    const Program& m_program;
    std::string_view m_src;
    std::size_t m_pos = 0;
    bool m_lineStarting = true;  // the previous match ended a line (jinja2's line_starting)
    std::vector<Token> m_tokens;
};

// ---- parser --------------------------------------------------------------------------------------------------------

class Parser {
public:
    Parser(const Program& program, std::vector<Token> tokens) : m_program(program), m_t(std::move(tokens)) {}

    Body parseTemplate() { return parseBody({}); }

private:
    // Counts recursion depth of statements and expressions.
    class Nest {
    public:
        explicit Nest(Parser& p) : m_p(p) {
            if (++m_p.m_depth > kMaxNesting)
                m_p.fail(m_p.cur(), "nesting deeper than " + std::to_string(kMaxNesting) + " levels");
        }
        ~Nest() { --m_p.m_depth; }
        Nest(const Nest&) = delete;
        Nest& operator=(const Nest&) = delete;

    private:
        Parser& m_p;
    };

    const Token& cur() const { return m_t[m_i]; }
    const Token& peek() const { return m_t[std::min(m_i + 1, m_t.size() - 1)]; }
    void advance() {
        if (m_i + 1 < m_t.size())
            ++m_i;
    }
    bool isOp(std::string_view op) const { return cur().kind == Tok::Op && cur().text == op; }
    bool isName(std::string_view name) const { return cur().kind == Tok::Name && cur().text == name; }

    static std::string describe(const Token& t) {
        switch (t.kind) {
            case Tok::Data:
                return "template text";
            case Tok::BlockBegin:
                return "'{%'";
            case Tok::BlockEnd:
                return "'%}'";
            case Tok::VarBegin:
                return "'{{'";
            case Tok::VarEnd:
                return "'}}'";
            case Tok::String:
                return "a string";
            case Tok::Int:
            case Tok::Float:
                return "a number";
            case Tok::Eof:
                return "the end of the template";
            case Tok::Name:
            case Tok::Op:
                return "'" + t.text + "'";
        }
        return "?";
    }

    [[noreturn]] void fail(const Token& t, const std::string& what) const {
        throw Failure{m_program.lineColumn(t.offset) + ": " + what};
    }
    [[noreturn]] void expected(const std::string& what) const {
        fail(cur(), "expected " + what + ", got " + describe(cur()));
    }

    void expectOp(std::string_view op) {
        if (!isOp(op))
            expected("'" + std::string(op) + "'");
        advance();
    }
    std::string expectName() {
        if (cur().kind != Tok::Name)
            expected("a name");
        std::string name = cur().text;
        advance();
        return name;
    }
    void expectKind(Tok kind, const char* what) {
        if (cur().kind != kind)
            expected(what);
        advance();
    }
    void expectBlockEnd() { expectKind(Tok::BlockEnd, "'%}' to end the statement"); }

    template <typename T>
    static std::unique_ptr<T> make(auto kind, std::uint32_t offset) {
        auto n = std::make_unique<T>();
        n->kind = kind;
        n->offset = offset;
        return n;
    }

    // ---- statements ----

    // Statements up to a block tag named in `ends`, left current (at its name), or the end of the template.
    Body parseBody(std::initializer_list<std::string_view> ends) {
        Nest nest(*this);
        Body body;
        for (;;) {
            const Token& t = cur();
            switch (t.kind) {
                case Tok::Eof:
                    if (ends.size() != 0) {
                        std::string list;
                        for (std::string_view e : ends) list += (list.empty() ? "'" : " or '") + std::string(e) + "'";
                        fail(t, "unexpected end of template, expected " + list);
                    }
                    return body;
                case Tok::Data: {
                    auto s = make<Stmt>(StmtKind::Text, t.offset);
                    s->text = t.text;
                    body.push_back(std::move(s));
                    advance();
                    break;
                }
                case Tok::VarBegin: {
                    auto s = make<Stmt>(StmtKind::Print, t.offset);
                    advance();
                    s->expr = parseTuple(true, false);
                    expectKind(Tok::VarEnd, "'}}'");
                    body.push_back(std::move(s));
                    break;
                }
                case Tok::BlockBegin: {
                    const Token& name = peek();
                    if (name.kind == Tok::Name && std::find(ends.begin(), ends.end(), name.text) != ends.end()) {
                        advance();
                        return body;
                    }
                    advance();
                    body.push_back(parseStatement());
                    break;
                }
                default:
                    expected("text or a tag");
            }
        }
    }

    StmtPtr parseStatement() {
        const Token& t = cur();
        if (t.kind != Tok::Name)
            expected("a statement name");
        if (t.text == "if")
            return parseIf();
        if (t.text == "for")
            return parseFor();
        if (t.text == "set")
            return parseSet();
        if (t.text == "macro")
            return parseMacro();
        if (t.text == "break" || t.text == "continue") {
            if (m_loopDepth == 0)
                fail(t, "'" + t.text + "' outside of a for loop");
            auto s = make<Stmt>(t.text == "break" ? StmtKind::Break : StmtKind::Continue, t.offset);
            advance();
            expectBlockEnd();
            return s;
        }
        static constexpr std::string_view kUnsupported[] = {"call",    "filter", "with", "block", "extends",
                                                            "include", "import", "from", "do",    "autoescape"};
        if (std::find(std::begin(kUnsupported), std::end(kUnsupported), t.text) != std::end(kUnsupported))
            fail(t, "the '" + t.text + "' tag is not supported");
        if (t.text.starts_with("end") || t.text == "else" || t.text == "elif")
            fail(t, "unexpected '" + t.text + "' (no open block it could close)");
        fail(t, "unknown tag '" + t.text + "'");
    }

    StmtPtr parseIf() {
        auto s = make<Stmt>(StmtKind::If, cur().offset);
        advance();
        ExprPtr cond = parseTuple(false, false);
        for (;;) {
            expectBlockEnd();
            Body body = parseBody({"elif", "else", "endif"});
            s->branches.emplace_back(std::move(cond), std::move(body));
            const std::string tag = expectName();
            if (tag == "elif") {
                cond = parseTuple(false, false);
                continue;
            }
            if (tag == "else") {
                expectBlockEnd();
                s->branches.emplace_back(nullptr, parseBody({"endif"}));
                advance();
            }
            expectBlockEnd();
            return s;
        }
    }

    StmtPtr parseFor() {
        auto s = make<Stmt>(StmtKind::For, cur().offset);
        advance();
        s->targets.push_back(expectName());
        while (isOp(",")) {
            advance();
            s->targets.push_back(expectName());
        }
        if (!isName("in"))
            expected("'in'");
        advance();
        s->expr = parseTuple(false, false);
        if (isName("if")) {
            advance();
            s->filter = parseExpression();
        }
        if (isName("recursive"))
            fail(cur(), "recursive for loops are not supported");
        expectBlockEnd();
        ++m_loopDepth;
        s->body = parseBody({"endfor", "else"});
        --m_loopDepth;
        if (expectName() == "else") {
            expectBlockEnd();
            s->elseBody = parseBody({"endfor"});
            advance();
        }
        expectBlockEnd();
        return s;
    }

    StmtPtr parseSet() {
        auto s = make<Stmt>(StmtKind::Set, cur().offset);
        advance();
        s->targets.push_back(expectName());
        if (isOp(".")) {
            advance();
            s->attribute = expectName();
        } else {
            while (isOp(",")) {
                advance();
                s->targets.push_back(expectName());
            }
        }
        if (isOp("=")) {
            advance();
            s->expr = parseTuple(true, false);
            expectBlockEnd();
            return s;
        }
        if (s->targets.size() > 1 || !s->attribute.empty())
            expected("'='");
        s->kind = StmtKind::SetBlock;
        expectBlockEnd();
        s->body = parseBody({"endset"});
        advance();
        expectBlockEnd();
        return s;
    }

    StmtPtr parseMacro() {
        auto s = make<Stmt>(StmtKind::Macro, cur().offset);
        advance();
        s->targets.push_back(expectName());
        expectOp("(");
        while (!isOp(")")) {
            if (!s->params.empty())
                expectOp(",");
            if (isOp(")"))
                break;
            const Token at = cur();
            std::string param = expectName();
            ExprPtr fallback;
            if (isOp("=")) {
                advance();
                fallback = parseExpression();
            } else if (!s->params.empty() && s->params.back().second) {
                fail(at, "parameter without default follows parameter with default");
            }
            s->params.emplace_back(std::move(param), std::move(fallback));
        }
        advance();
        expectBlockEnd();
        const int outerLoops = m_loopDepth;  // a macro body is not inside the caller's loop
        m_loopDepth = 0;
        s->body = parseBody({"endmacro"});
        m_loopDepth = outerLoops;
        advance();
        expectBlockEnd();
        return s;
    }

    // ---- expressions (jinja2/parser.py precedence, loosest first) ----

    bool isTupleEnd() const {
        return cur().kind == Tok::VarEnd || cur().kind == Tok::BlockEnd || cur().kind == Tok::Eof || isOp(")");
    }

    // `a, b` makes a tuple (a list here); `withCondExpr` false leaves a trailing `if` to a for loop's filter.
    ExprPtr parseTuple(bool withCondExpr, bool explicitParens) {
        const std::uint32_t offset = cur().offset;
        std::vector<ExprPtr> items;
        bool isTuple = false;
        for (;;) {
            if (!items.empty())
                expectOp(",");
            if (isTupleEnd())
                break;
            items.push_back(withCondExpr ? parseExpression() : parseOr());
            if (!isOp(","))
                break;
            isTuple = true;
        }
        if (!isTuple) {
            if (!items.empty())
                return std::move(items.front());
            if (!explicitParens)
                expected("an expression");
        }
        auto e = make<Expr>(ExprKind::Tuple, offset);
        e->args = std::move(items);
        return e;
    }

    ExprPtr parseExpression() {
        Nest nest(*this);
        ExprPtr expr = parseOr();
        while (isName("if")) {
            auto e = make<Expr>(ExprKind::Conditional, cur().offset);
            advance();
            ExprPtr cond = parseOr();
            ExprPtr otherwise;
            if (isName("else")) {
                advance();
                otherwise = parseExpression();
            }
            e->args.push_back(std::move(expr));
            e->args.push_back(std::move(cond));
            e->args.push_back(std::move(otherwise));
            expr = std::move(e);
        }
        return expr;
    }

    ExprPtr binary(ExprKind kind, std::string op, std::uint32_t offset, ExprPtr left, ExprPtr right) {
        auto e = make<Expr>(kind, offset);
        e->name = std::move(op);
        e->args.push_back(std::move(left));
        e->args.push_back(std::move(right));
        return e;
    }

    ExprPtr parseOr() {
        ExprPtr left = parseAnd();
        while (isName("or")) {
            const std::uint32_t offset = cur().offset;
            advance();
            left = binary(ExprKind::Or, "or", offset, std::move(left), parseAnd());
        }
        return left;
    }

    ExprPtr parseAnd() {
        ExprPtr left = parseNot();
        while (isName("and")) {
            const std::uint32_t offset = cur().offset;
            advance();
            left = binary(ExprKind::And, "and", offset, std::move(left), parseNot());
        }
        return left;
    }

    ExprPtr parseNot() {
        if (!isName("not"))
            return parseCompare();
        Nest nest(*this);
        auto e = make<Expr>(ExprKind::Not, cur().offset);
        advance();
        e->args.push_back(parseNot());
        return e;
    }

    ExprPtr parseCompare() {
        const std::uint32_t offset = cur().offset;
        ExprPtr first = parseMath1();
        std::vector<ExprPtr> operands;
        std::vector<std::string> ops;
        for (;;) {
            static constexpr std::string_view kOps[] = {"==", "!=", "<", ">", "<=", ">="};
            if (cur().kind == Tok::Op && std::find(std::begin(kOps), std::end(kOps), cur().text) != std::end(kOps)) {
                ops.push_back(cur().text);
                advance();
            } else if (isName("in")) {
                ops.emplace_back("in");
                advance();
            } else if (isName("not") && peek().kind == Tok::Name && peek().text == "in") {
                ops.emplace_back("not in");
                advance();
                advance();
            } else {
                break;
            }
            operands.push_back(parseMath1());
        }
        if (ops.empty())
            return first;
        auto e = make<Expr>(ExprKind::Compare, offset);
        e->args.push_back(std::move(first));
        for (auto& o : operands) e->args.push_back(std::move(o));
        e->ops = std::move(ops);
        return e;
    }

    ExprPtr parseMath1() {
        ExprPtr left = parseConcat();
        while (isOp("+") || isOp("-")) {
            const Token op = cur();
            advance();
            left = binary(ExprKind::Binary, op.text, op.offset, std::move(left), parseConcat());
        }
        return left;
    }

    ExprPtr parseConcat() {
        ExprPtr left = parseMath2();
        while (isOp("~")) {
            const std::uint32_t offset = cur().offset;
            advance();
            left = binary(ExprKind::Binary, "~", offset, std::move(left), parseMath2());
        }
        return left;
    }

    ExprPtr parseMath2() {
        ExprPtr left = parsePow();
        while (isOp("*") || isOp("/") || isOp("//") || isOp("%")) {
            const Token op = cur();
            advance();
            left = binary(ExprKind::Binary, op.text, op.offset, std::move(left), parsePow());
        }
        return left;
    }

    ExprPtr parsePow() {
        ExprPtr left = parseUnary(true);
        while (isOp("**")) {
            const std::uint32_t offset = cur().offset;
            advance();
            left = binary(ExprKind::Binary, "**", offset, std::move(left), parseUnary(true));
        }
        return left;
    }

    ExprPtr parseUnary(bool withFilter) {
        Nest nest(*this);
        ExprPtr node;
        if (isOp("-") || isOp("+")) {
            node = make<Expr>(isOp("-") ? ExprKind::Negate : ExprKind::Plus, cur().offset);
            advance();
            node->args.push_back(parseUnary(false));
        } else {
            node = parsePrimary();
        }
        node = parsePostfix(std::move(node));
        return withFilter ? parseFilterExpr(std::move(node)) : std::move(node);
    }

    ExprPtr literal(std::uint32_t offset, Value v) {
        auto e = make<Expr>(ExprKind::Literal, offset);
        e->literal = std::move(v);
        return e;
    }

    ExprPtr parsePrimary() {
        const Token& t = cur();
        switch (t.kind) {
            case Tok::Name: {
                advance();
                if (t.text == "true" || t.text == "True" || t.text == "false" || t.text == "False")
                    return literal(t.offset, Value(t.text == "true" || t.text == "True"));
                if (t.text == "none" || t.text == "None")
                    return literal(t.offset, Value(nullptr));
                auto e = make<Expr>(ExprKind::Name, t.offset);
                e->name = t.text;
                return e;
            }
            case Tok::String: {
                const std::uint32_t offset = t.offset;
                std::string s;
                while (cur().kind == Tok::String) {  // adjacent literals concatenate
                    s += cur().text;
                    advance();
                }
                return literal(offset, Value(std::move(s)));
            }
            case Tok::Int:
            case Tok::Float:
                advance();
                return literal(t.offset, t.number);
            case Tok::Op:
                if (t.text == "(") {
                    advance();
                    ExprPtr e = parseTuple(true, true);
                    expectOp(")");
                    return e;
                }
                if (t.text == "[" || t.text == "{") {
                    const bool isDict = t.text == "{";
                    auto e = make<Expr>(isDict ? ExprKind::Dict : ExprKind::List, t.offset);
                    advance();
                    const char* close = isDict ? "}" : "]";
                    while (!isOp(close)) {
                        if (!e->args.empty())
                            expectOp(",");
                        if (isOp(close))
                            break;
                        e->args.push_back(parseExpression());
                        if (isDict) {
                            expectOp(":");
                            e->args.push_back(parseExpression());
                        }
                    }
                    advance();
                    return e;
                }
                break;
            default:
                break;
        }
        expected("an expression");
    }

    ExprPtr parsePostfix(ExprPtr node) {
        for (;;) {
            const std::uint32_t offset = cur().offset;
            if (isOp(".")) {
                advance();
                if (cur().kind == Tok::Int) {  // foo.0 is foo[0]
                    auto e = make<Expr>(ExprKind::GetItem, offset);
                    e->args.push_back(std::move(node));
                    e->args.push_back(literal(cur().offset, cur().number));
                    advance();
                    node = std::move(e);
                } else {
                    auto e = make<Expr>(ExprKind::GetAttr, offset);
                    e->name = expectName();
                    e->args.push_back(std::move(node));
                    node = std::move(e);
                }
            } else if (isOp("[")) {
                node = parseSubscript(std::move(node));
            } else if (isOp("(")) {
                const std::uint32_t calleeOffset = node->offset;
                node = parseCall(ExprKind::Call, {}, std::move(node), calleeOffset);
            } else {
                return node;
            }
        }
    }

    ExprPtr parseSubscript(ExprPtr object) {
        auto e = make<Expr>(ExprKind::GetItem, cur().offset);
        advance();
        e->args.push_back(std::move(object));
        ExprPtr start = isOp(":") ? nullptr : parseExpression();
        if (isOp(":")) {
            e->kind = ExprKind::Slice;
            advance();
            e->args.push_back(std::move(start));
            e->args.push_back(isOp("]") || isOp(":") ? nullptr : parseExpression());
            ExprPtr step;
            if (isOp(":")) {
                advance();
                if (!isOp("]"))
                    step = parseExpression();
            }
            e->args.push_back(std::move(step));
        } else {
            e->args.push_back(std::move(start));
        }
        expectOp("]");
        return e;
    }

    // `subject(args)` for calls; `subject | name(args)` and `subject is name(args)` for filters and tests.
    ExprPtr parseCall(ExprKind kind, std::string name, ExprPtr subject, std::uint32_t offset) {
        auto e = make<Expr>(kind, offset);
        e->name = std::move(name);
        e->args.push_back(std::move(subject));
        if (!isOp("("))
            return e;
        advance();
        while (!isOp(")")) {
            if (e->args.size() + e->kwargs.size() > 1)
                expectOp(",");
            if (isOp(")"))
                break;
            if (isOp("*") || isOp("**"))
                fail(cur(), "*args and **kwargs are not supported");
            if (cur().kind == Tok::Name && peek().kind == Tok::Op && peek().text == "=") {
                std::string key = cur().text;
                advance();
                advance();
                e->kwargs.emplace_back(std::move(key), parseExpression());
            } else {
                if (!e->kwargs.empty())
                    fail(cur(), "positional argument after keyword argument");
                e->args.push_back(parseExpression());
            }
        }
        advance();
        return e;
    }

    std::string dottedName() {
        std::string name = expectName();
        while (isOp(".")) {
            advance();
            name += "." + expectName();
        }
        return name;
    }

    ExprPtr parseFilterExpr(ExprPtr node) {
        for (;;) {
            if (isOp("|")) {
                advance();
                const Token at = cur();
                std::string name = dottedName();
                if (!isKnownFilter(name))
                    fail(at, "no filter named '" + name + "'");
                node = parseCall(ExprKind::Filter, std::move(name), std::move(node), at.offset);
            } else if (isName("is")) {
                advance();
                bool negated = false;
                if (isName("not")) {
                    negated = true;
                    advance();
                }
                const Token at = cur();
                std::string name = dottedName();
                if (!isKnownTest(name))
                    fail(at, "no test named '" + name + "'");
                if (isOp("(")) {
                    node = parseCall(ExprKind::Test, std::move(name), std::move(node), at.offset);
                } else {
                    auto e = make<Expr>(ExprKind::Test, at.offset);
                    e->name = std::move(name);
                    e->args.push_back(std::move(node));
                    // `x is divisibleby 3`: one argument without parentheses (jinja2's parse_test).
                    const Tok k = cur().kind;
                    const bool argStart = k == Tok::Name || k == Tok::String || k == Tok::Int || k == Tok::Float ||
                                          isOp("(") || isOp("[") || isOp("{");
                    if (argStart && !isName("else") && !isName("or") && !isName("and")) {
                        if (isName("is"))
                            fail(cur(), "tests cannot be chained with 'is'");
                        e->args.push_back(parsePostfix(parsePrimary()));
                    }
                    node = std::move(e);
                }
                node->negated = negated;
            } else if (isOp("(")) {
                const std::uint32_t calleeOffset = node->offset;
                node = parseCall(ExprKind::Call, {}, std::move(node), calleeOffset);
            } else {
                return node;
            }
        }
    }

    const Program& m_program;
    std::vector<Token> m_t;
    std::size_t m_i = 0;
    int m_depth = 0;
    int m_loopDepth = 0;
};

}  // namespace

void parseProgram(Program& program) {
    // jinja2 normalises \r\n and \r to \n, and drops one trailing newline (keep_trailing_newline=False).
    std::string& s = program.normalized;
    s.clear();
    for (std::size_t i = 0; i < program.source.size(); ++i) {
        const char c = program.source[i];
        if (c == '\r') {
            s += '\n';
            if (i + 1 < program.source.size() && program.source[i + 1] == '\n')
                ++i;
        } else {
            s += c;
        }
    }
    if (!s.empty() && s.back() == '\n')
        s.pop_back();
    Parser parser(program, Lexer(program).run());
    program.body = parser.parseTemplate();
}

}  // namespace inference::jinja
