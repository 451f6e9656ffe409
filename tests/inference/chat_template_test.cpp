// Chat templates: EXPECTED.md's renderings, Jinja2 fixtures made by tools/render_templates.py (Debian python3-jinja2
// 3.1.2) for every template x conversation, Jinja semantics spot checks (expected strings from the same Jinja2),
// errors and limits, the fallback choice and end-of-turn detection.
#include "inference/chat_template.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace {

using inference::ChatMessage;
using inference::ChatRenderInput;
using inference::ChatTemplate;
using inference::ErrorCode;
using inference::Value;
using Json = nlohmann::ordered_json;  // keeps key order, which templates iterate

const std::filesystem::path kTemplates = std::filesystem::path(ROUNDCHAT_SHARED_DIR) / "models/chat_templates";
const std::filesystem::path kFixtures =
    std::filesystem::path(ROUNDCHAT_SOURCE_DIR) / "tests/inference/data/chat_templates";

std::string readFile(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

Value toValue(const Json& j) {
    switch (j.type()) {
        case Json::value_t::null:
            return Value(nullptr);
        case Json::value_t::boolean:
            return Value(j.get<bool>());
        case Json::value_t::number_integer:
        case Json::value_t::number_unsigned:
            return Value(j.get<std::int64_t>());
        case Json::value_t::number_float:
            return Value(j.get<double>());
        case Json::value_t::string:
            return Value(j.get<std::string>());
        case Json::value_t::array: {
            std::vector<Value> items;
            for (const Json& item : j) items.push_back(toValue(item));
            return Value::list(std::move(items));
        }
        case Json::value_t::object: {
            Value::Entries entries;
            for (const auto& [key, item] : j.items()) entries.emplace_back(key, toValue(item));
            return Value::map(std::move(entries));
        }
        default:
            return Value();
    }
}

// The conversation of EXPECTED.md.
std::vector<ChatMessage> expectedConversation() {
    return {{"system", "You are helpful."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "What is 2+2?"}};
}

ChatRenderInput inputFromConfig(const Json& config) {
    ChatRenderInput in;
    in.messages = expectedConversation();
    in.bosToken = config.value("bos_token", "");
    in.eosToken = config.value("eos_token", "");
    in.unkToken = config.value("unk_token", "");
    in.padToken = config.value("pad_token", "");
    return in;
}

std::string renderOk(const ChatTemplate& t, const ChatRenderInput& in) {
    auto out = t.render(in);
    EXPECT_TRUE(out.ok()) << (out.ok() ? "" : out.error().toString());
    return out.ok() ? *out : std::string();
}

std::string renderSource(std::string_view source, ChatRenderInput in = {}) {
    auto t = ChatTemplate::parse(source, "inline");
    EXPECT_TRUE(t.ok()) << (t.ok() ? "" : t.error().toString());
    return t.ok() ? renderOk(*t, in) : std::string();
}

// Renders and returns the error detail (empty, with a test failure, when rendering succeeds).
std::string renderError(std::string_view source, ChatRenderInput in = {}) {
    auto t = ChatTemplate::parse(source, "inline");
    if (!t)
        return t.error().detail;
    auto out = t->render(in);
    EXPECT_FALSE(out.ok()) << "rendered: " << *out;
    if (out.ok())
        return {};
    EXPECT_EQ(out.error().code, ErrorCode::TemplateError);
    return out.error().detail;
}

// ---- EXPECTED.md ---------------------------------------------------------------------------------------------------

const std::string kChatmlExpected =
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!"
    "<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n";
const std::string kZephyrExpected =
    "<|system|>\nYou are helpful.</s>\n<|user|>\nHi</s>\n<|assistant|>\nHello!</s>\n<|user|>\nWhat is 2+2?</s>\n"
    "<|assistant|>\n";
const std::string kZephyrWithoutTrim =
    "\n\n<|system|>\nYou are helpful.</s>\n\n\n\n\n<|user|>\nHi</s>\n\n\n\n\n<|assistant|>\nHello!</s>\n\n\n\n\n"
    "<|user|>\nWhat is 2+2?</s>\n\n\n<|assistant|>\n\n";

TEST(ChatTemplate, ExpectedMdChatml) {
    const Json config = Json::parse(readFile(kTemplates / "llama68m_chat_tokenizer_config.json"));
    auto t = ChatTemplate::parse(config["chat_template"].get<std::string>(), "llama68m");
    ASSERT_TRUE(t.ok()) << t.error().toString();
    const std::string out = renderOk(*t, inputFromConfig(config));
    EXPECT_EQ(out, kChatmlExpected);
    EXPECT_EQ(out.size(), 177u);
}

TEST(ChatTemplate, ExpectedMdZephyrUsesTrimAndLstripBlocks) {
    const Json config = Json::parse(readFile(kTemplates / "tinyllama_chat_tokenizer_config.json"));
    auto t = ChatTemplate::parse(config["chat_template"].get<std::string>(), "tinyllama");
    ASSERT_TRUE(t.ok()) << t.error().toString();
    const std::string out = renderOk(*t, inputFromConfig(config));
    EXPECT_EQ(out, kZephyrExpected);
    EXPECT_EQ(out.size(), 113u);
    EXPECT_NE(out, kZephyrWithoutTrim);
}

TEST(ChatTemplate, BuiltinsMatchTheirModels) {
    ChatRenderInput in;
    in.messages = expectedConversation();
    in.eosToken = "</s>";
    auto chatml = ChatTemplate::builtin("chatml");
    auto zephyr = ChatTemplate::builtin("zephyr");
    ASSERT_TRUE(chatml.ok() && zephyr.ok());
    EXPECT_EQ(renderOk(*chatml, in), kChatmlExpected);
    EXPECT_EQ(renderOk(*zephyr, in), kZephyrExpected);

    auto llama2 = ChatTemplate::builtin("llama2");
    ASSERT_TRUE(llama2.ok()) << llama2.error().toString();
    in.bosToken = "<s>";
    EXPECT_EQ(renderOk(*llama2, in),
              "[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] What is 2+2? [/INST]");
    in.messages = {{"assistant", "first"}};
    EXPECT_NE(llama2->render(in).ok(), true);

    auto unknown = ChatTemplate::builtin("vicuna");
    ASSERT_FALSE(unknown.ok());
    EXPECT_NE(unknown.error().detail.find("chatml"), std::string::npos);
}

// ---- Jinja2 fixtures -----------------------------------------------------------------------------------------------

TEST(ChatTemplate, EveryTemplateAndCaseMatchesJinja2) {
    const Json manifest = Json::parse(readFile(kFixtures / "cases.json"));
    ASSERT_EQ(manifest["jinja2_version"], "3.1.2");
    const Json& date = manifest["strftime_now_date"];
    int checked = 0, matched = 0;
    for (const auto& [name, info] : manifest["templates"].items()) {
        const std::string sourcePath = info["source"].get<std::string>();
        std::string source = readFile(kTemplates / sourcePath);
        if (sourcePath.ends_with(".json"))
            source = Json::parse(source)["chat_template"].get<std::string>();
        ASSERT_FALSE(source.empty()) << sourcePath;
        auto t = ChatTemplate::parse(source, name);
        ASSERT_TRUE(t.ok()) << t.error().toString();
        for (const Json& c : manifest["cases"]) {
            const std::string stem = name + "__" + c["name"].get<std::string>();
            SCOPED_TRACE(stem);
            ChatRenderInput in;
            for (const Json& m : c["messages"])
                in.messages.push_back({m["role"].get<std::string>(), m["content"].get<std::string>()});
            in.addGenerationPrompt = c["add_generation_prompt"].get<bool>();
            in.bosToken = info["bos_token"].get<std::string>();
            in.eosToken = info["eos_token"].get<std::string>();
            in.unkToken = info["unk_token"].get<std::string>();
            in.padToken = info["pad_token"].get<std::string>();
            if (c.contains("variables"))
                for (const auto& [key, value] : c["variables"].items()) in.variables.emplace_back(key, toValue(value));
            in.now =
                inference::LocalDateTime{date["year"].get<int>(), date["month"].get<int>(), date["day"].get<int>()};
            ++checked;
            auto out = t->render(in);
            if (std::filesystem::exists(kFixtures / (stem + ".txt"))) {
                const std::string expected = readFile(kFixtures / (stem + ".txt"));
                ASSERT_TRUE(out.ok()) << out.error().toString();
                EXPECT_EQ(*out, expected);
                matched += *out == expected;
            } else {
                const std::string expected = readFile(kFixtures / (stem + ".error"));
                ASSERT_FALSE(expected.empty()) << "no fixture for " << stem;
                ASSERT_FALSE(out.ok()) << "Jinja2 raised: " << expected;
                EXPECT_EQ(out.error().code, ErrorCode::TemplateError);
                // raise_exception() messages must reach the user unchanged.
                const std::string kRaised = "TemplateError: ";
                if (expected.starts_with(kRaised)) {
                    EXPECT_NE(out.error().detail.find(expected.substr(kRaised.size())), std::string::npos)
                        << out.error().detail;
                    matched += out.error().detail.find(expected.substr(kRaised.size())) != std::string::npos;
                } else {
                    ++matched;
                }
            }
        }
    }
    EXPECT_EQ(checked, 90);  // 9 templates x 10 conversations
    EXPECT_EQ(matched, checked);
    RecordProperty("fixtures_matched", matched);
}

// ---- Jinja semantics, expected strings rendered by Jinja2 3.1.2 with trim_blocks and lstrip_blocks -------------

TEST(ChatTemplate, JinjaSemanticsMatchJinja2) {
    const std::pair<const char*, const char*> kCases[] = {
        {"{% for x in [1,2,3] %}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex "
         "}}|{% "
         "endfor %}",
         "0TrueFalse33|1FalseFalse32|2FalseTrue31|"},
        {"{% set ns = namespace(n=0) %}{% for i in range(5) %}{% if i is even %}{% set ns.n = ns.n + i %}{% endif %}{% "
         "endfor %}{{ ns.n }}",
         "6"},
        {"{% set y = 1 %}{% for i in range(3) %}{{ y }}{% set y = i + 10 %}{{ y }},{% endfor %}{{ y }}",
         "110,111,112,1"},
        {"{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i "
         "}}{% endfor %}",
         "0134"},
        {"{{ 'abcdef'[::-1] }}|{{ 'abcdef'[1:] }}|{{ 'abcdef'[:-2] }}|{{ [1,2,3,4][::2] }}|{{ 'héllo'[1] }}|{{ "
         "'héllo'|length }}",
         "fedcba|bcdef|abcd|[1, 3]|é|5"},
        {"{{ 1/3 }} {{ 7//2 }} {{ -7//2 }} {{ -7%3 }} {{ 2**10 }} {{ 1e20 }} {{ 0.1+0.2 }} {{ 1.0 }} {{ 3 * 'ab' }} {{ "
         "1 ~ 'x' ~ none }}",
         "0.3333333333333333 3 -4 2 1024 1e+20 0.30000000000000004 1.0 ababab 1xNone"},
        {"{{ {'a': [1, 2.5, none, true, 'q\"\\'n\\n']}|tojson }}|{{ {'b': {'c': []}, 'd': {}}|tojson(indent=2) }}",
         "{\"a\": [1, 2.5, null, true, \"q\\\"'n\\n\"]}|{\n  \"b\": {\n    \"c\": []\n  },\n  \"d\": {}\n}"},
        {"{{ [1, 'a', none, true, {'k': \"it's\"}] }}", "[1, 'a', None, True, {'k': \"it's\"}]"},
        {"  {% if true %}\n    x\n  {% endif %}\n  {{ 'y' }}\n{# c #}\n  z\n{%- if true -%}\n  w  \n{%+ if true %} p{% "
         "endif %}\n{% endif %}",
         "    x\n  y\n  zw  \n p"},
        {"{{ '  a b  '.strip() }}|{{ 'xxaxx'.strip('x') }}|{{ ' a b c '.split() }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b "
         "c'.split(' ', 1) }}|{{ 'Hello'.startswith('He') }}|{{ 'Hello'.endswith(('x','lo')) }}|{{ "
         "'aaa'.replace('a','b',2) }}|{{ 'hello world'.title() }}|{{ 'ABC'.lower() }}",
         "a b|a|['a', 'b', 'c']|['a', 'b', '', 'c']|['a', 'b c']|True|True|bba|Hello World|abc"},
        {"{% set d = {'b': 1, 'a': 2} %}{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{{ d.get('a') }}{{ "
         "d.get('z', 'none') }}{{ d|length }}{{ 'a' in d }}{{ d.keys()|list }}",
         "b=1;a=2;2none2True['b', 'a']"},
        {"{{ x is defined }}{{ x is undefined }}{{ none is none }}{{ 'a' is string }}{{ {} is mapping }}{{ [] is "
         "iterable }}{{ 1 is number }}{{ 3 is divisibleby 3 }}{{ 'a' is in 'cat' }}{{ 2 is not equalto 3 }}",
         "FalseTrueTrueTrueTrueTrueTrueTrueTrueTrue"},
        {"{{ [{'r':'u','n':1},{'r':'a','n':2},{'r':'u','n':3}]|selectattr('r','equalto','u')|map(attribute='n')|join("
         "',') }}|{{ [{'a':1},{'a':0},{}]|rejectattr('a')|list }}|{{ [3,1,2]|sort|first }}{{ [3,1,2]|last }}",
         "1,3|[{'a': 0}, {}]|12"},
        {"{{ x|default('dflt') }}|{{ ''|default('e', true) }}|{{ 'AbC'|upper }}{{ 'AbC'|lower }}|{{ ' t '|trim }}|{{ "
         "42|string + '!' }}|{{ 'a-b'|replace('-', '+') }}|{{ '12'|int + 1 }}|{{ [1,2]|reverse|list }}",
         "dflt|e|ABCabc|t|42!|a+b|13|[2, 1]"},
        {"{{ 'yes' if 1 > 2 else 'no' }}{{ 'v' if false }}|{{ 1 < 2 < 3 }}{{ not 1 == 1 }}{{ 0 or 'b' }}{{ 1 and 'c' "
         "}}",
         "no|TrueFalsebc"},
        {"{% set t %}inner {{ 1 + 1 }}{% endset %}[{{ t }}]{% raw %}{{ not rendered }}{% endraw %}",
         "[inner 2]{{ not rendered }}"},
        {"{% for x in [] %}a{% else %}empty{% endfor %}{% for x in [1,2,3,4] if x is odd %}{{ x }}{{ loop.length }}{% "
         "endfor %}",
         "empty1232"},
        {"{{- '  a' }}  {{- ' b ' -}}  {{ 'c' }}\n{{ 'd' }}\n", "  a b c\nd"},
        {"{{ [1,2] + [3] }}{{ 'a' < 'b' }}{{ 1 == 1.0 }}{{ true == 1 }}{{ [1,[2]] == [1,[2]] }}{{ {'a':1,'b':2} == "
         "{'b':2,'a':1} }}",
         "[1, 2, 3]TrueTrueTrueTrueTrue"},
        {"{% set top = 'T' %}{% macro render(m, prefix='> ') %}{{ prefix }}{{ m.role }}: {{ m.content | trim }}{{ top "
         "}}{% set top = 'local' %}{% endmacro %}{% for m in messages %}{{ render(m) }}|{{ render(m, prefix='# ') }}{% "
         "endfor %}{{ top }}|{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% "
         "endmacro %}{{ fact(5) }}|{{ render }}",
         "> u: cT|# u: cTT|120|<Macro 'render'>"},
        {"{% macro f(a) %}[{{ a }}]{% endmacro %}{{ f() }}", "[]"},
        {"{{ (1, 2) }}{{ (1,) }}{{ () }}{{ (1, 2) == [1, 2] }}{{ (1, 2) + (3,) }}{{ [3,1,2]|min }}{{ ['b','A']|max "
         "}}{{ "
         "[1,2.5]|sum }}{{ [{'n':2},{'n':1}]|min(attribute='n') }}|{{ (1, 2)[1:] }}{{ {'a': 1}.items()|first }}",
         "(1, 2)(1,)()False(1, 2, 3)1b3.5{'n': 1}|(2,)('a', 1)"},
        {"{{ {'a': none}|tojson(indent=' ') }}|{{ [1,[2,[3]]]|tojson(indent=0) }}|{{ '\u00e9\u2028'|tojson }}|{{ "
         "{'z':1,'a':2}|tojson(sort_keys=true) }}|{{ '\u00e9'|tojson(ensure_ascii=true) }}|{{ "
         "'\U0001F600'|tojson(ensure_ascii=true) }}",
         "{\n \"a\": null\n}|[\n1,\n[\n2,\n[\n3\n]\n]\n]|\"\u00e9\u2028\"|{\"a\": 2, \"z\": 1}|\"\\u00e9\"|"
         "\"\\ud83d\\ude00\""},
        {"{% for m in messages %}{{ m.role }}{% endfor %}{{ messages|length }}{{ messages[0]['x'] is defined }}",
         "u1False"},
    };
    ChatRenderInput in;
    in.messages = {{"u", " c "}};
    for (const auto& [source, expected] : kCases) {
        SCOPED_TRACE(source);
        EXPECT_EQ(renderSource(source, in), expected);
    }
}

TEST(ChatTemplate, ExtraVariablesAndStrftime) {
    ChatRenderInput in;
    in.variables = {{"tools", Value::list({Value::map({{"name", "f"}, {"n", 1.5}})})}, {"flag", false}};
    in.now = inference::LocalDateTime{2024, 7, 26, 15, 4, 5};
    EXPECT_EQ(renderSource(
                  "{{ tools[0].name }}{{ tools|tojson }}{{ flag }}|{{ strftime_now('%A %d %b %Y %H:%M:%S %j') }}", in),
              "f[{\"name\": \"f\", \"n\": 1.5}]False|Friday 26 Jul 2024 15:04:05 208");
}

// ---- errors and limits ---------------------------------------------------------------------------------------------

TEST(ChatTemplate, ParseErrorsNameLineAndExpectation) {
    auto unclosedIf = ChatTemplate::parse("line one\n{% if x %}never closed", "broken");
    ASSERT_FALSE(unclosedIf.ok());
    EXPECT_EQ(unclosedIf.error().code, ErrorCode::TemplateError);
    EXPECT_NE(unclosedIf.error().detail.find("broken: line 2"), std::string::npos) << unclosedIf.error().detail;
    EXPECT_NE(unclosedIf.error().detail.find("'endif'"), std::string::npos) << unclosedIf.error().detail;

    const std::pair<const char*, const char*> kBroken[] = {
        {"{{ x ", "expected '}}'"},
        {"{% for m in messages %}x", "'endfor'"},
        {"{{ x | frobnicate }}", "no filter named 'frobnicate'"},
        {"{{ x is frobnicated }}", "no test named 'frobnicated'"},
        {"{% endif %}", "unexpected 'endif'"},
        {"{% call m() %}{% endcall %}", "not supported"},
        {"{% macro m(a=1, b) %}{% endmacro %}", "parameter without default"},
        {"{{ 'abc }}", "unterminated string"},
        {"{# comment", "unclosed comment"},
        {"{{ (1 }}", "expected ')'"},
        {"{% break %}", "outside of a for loop"},
        {"{{ 1 + }}", "expected an expression"},
        {"{% frob %}", "unknown tag 'frob'"},
    };
    for (const auto& [source, message] : kBroken) {
        auto t = ChatTemplate::parse(source);
        ASSERT_FALSE(t.ok()) << source;
        EXPECT_NE(t.error().detail.find(message), std::string::npos) << source << " -> " << t.error().detail;
        EXPECT_NE(t.error().detail.find("line 1, column"), std::string::npos) << t.error().detail;
    }
    std::string deep(500, '(');
    EXPECT_FALSE(ChatTemplate::parse("{{ " + deep + " }}").ok());
}

TEST(ChatTemplate, RenderErrors) {
    EXPECT_NE(renderError("a\n{{ raise_exception('Roles must alternate!') }}")
                  .find("line 2, column 4: Roles must alternate!"),
              std::string::npos);
    EXPECT_NE(renderError("{{ 'a' + 1 }}").find("unsupported operand"), std::string::npos);
    EXPECT_NE(renderError("{{ nothing.attr }}").find("undefined"), std::string::npos);
    EXPECT_NE(renderError("{{ messages[0]['role'] }}").find("undefined"), std::string::npos);  // no messages
    EXPECT_NE(renderError("{{ nothing() }}").find("'nothing' is undefined"), std::string::npos);
    EXPECT_NE(renderError("{{ 1 // 0 }}").find("division by zero"), std::string::npos);
    EXPECT_NE(renderError("{% set x = 5 %}{% set x.a = 1 %}").find("non-namespace"), std::string::npos);
    EXPECT_NE(renderError("{% for x in 5 %}{% endfor %}").find("not iterable"), std::string::npos);
    EXPECT_NE(renderError("{{ x|tojson }}").find("not JSON serializable"), std::string::npos);
    EXPECT_NE(renderError("{% macro f(a) %}{% endmacro %}{{ f(1, 2) }}").find("not more than 1"), std::string::npos);
    EXPECT_NE(renderError("{% macro f(a) %}{% endmacro %}{{ f(b=1) }}").find("no keyword argument 'b'"),
              std::string::npos);
    EXPECT_NE(renderError("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}").find("macros nested deeper"),
              std::string::npos);
}

TEST(ChatTemplate, LimitsStopHostileTemplates) {
    ChatRenderInput in;
    in.limits.maxSteps = 200'000;
    EXPECT_NE(renderError("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", in)
                  .find("budget"),
              std::string::npos);
    EXPECT_NE(renderError("{% for a in range(1000000000000) %}{% endfor %}", in).find("budget"), std::string::npos);
    in.limits.maxSteps = 10'000'000;
    in.limits.maxOutputBytes = 4096;
    EXPECT_NE(renderError("{% for a in range(10000) %}xxxxxxxx{% endfor %}", in).find("exceeds"), std::string::npos);
    EXPECT_NE(renderError("{{ 'x' * 100000 }}", in).find("exceeds"), std::string::npos);
    // Doubling a shared list makes a value whose printed form would be exponentially large.
    EXPECT_NE(renderError("{% set ns = namespace(x=[1]) %}{% for i in range(60) %}{% set ns.x = [ns.x, ns.x] %}{% "
                          "endfor %}{{ ns.x }}",
                          in)
                  .find("too large"),
              std::string::npos);
    EXPECT_NE(
        renderError("{% set ns = namespace(x=1) %}{% for i in range(400) %}{% set ns.x = [ns.x] %}{% endfor %}", in)
            .find("nested deeper"),
        std::string::npos);
    EXPECT_NE(renderError("{% set ns = namespace() %}{% set ns.me = ns %}", in).find("namespace"), std::string::npos);
}

// ---- choosing a template and end-of-turn markers -------------------------------------------------------------------

TEST(ChatTemplate, ChooseTemplateFallsBackWithNotice) {
    for (const std::optional<std::string>& missing : {std::optional<std::string>{}, std::optional<std::string>{""}}) {
        auto choice = inference::chooseTemplate(missing);
        ASSERT_TRUE(choice.ok()) << choice.error().toString();
        EXPECT_TRUE(choice->isFallback);
        EXPECT_EQ(choice->name, "chatml");
        EXPECT_EQ(choice->notice, "This model has no chat template; using the ChatML default.");
        ChatRenderInput in;
        in.messages = expectedConversation();
        EXPECT_EQ(renderOk(choice->tmpl, in), kChatmlExpected);
    }
    auto own = inference::chooseTemplate(std::string("{{ messages[0].content }}"));
    ASSERT_TRUE(own.ok());
    EXPECT_FALSE(own->isFallback);
    EXPECT_TRUE(own->notice.empty());
    EXPECT_EQ(own->name, "model");

    auto broken = inference::chooseTemplate(std::string("{% if %}"));
    ASSERT_FALSE(broken.ok());
    EXPECT_EQ(broken.error().code, ErrorCode::TemplateError);
}

TEST(ChatTemplate, EndOfTurnStrings) {
    const Json manifest = Json::parse(readFile(kFixtures / "cases.json"));
    const std::map<std::string, std::string> kExpected = {
        {"HuggingFaceTB-SmolLM3-3B", "<|im_end|>"},
        {"Qwen-Qwen2.5-7B-Instruct", "<|im_end|>"},
        {"deepseek-ai-DeepSeek-R1-Distill-Llama-8B", "<｜end▁of▁sentence｜>"},
        {"google-gemma-2-2b-it", "<end_of_turn>"},
        {"meta-llama-Llama-3.2-3B-Instruct", "<|eot_id|>"},
        {"microsoft-Phi-3.5-mini-instruct", "<|end|>"},
        {"mistralai-Mistral-Nemo-Instruct-2407", "</s>"},
        {"llama68m_chat", "<|im_end|>"},
        {"tinyllama_chat", "</s>"},
    };
    for (const auto& [name, info] : manifest["templates"].items()) {
        SCOPED_TRACE(name);
        const std::string sourcePath = info["source"].get<std::string>();
        std::string source = readFile(kTemplates / sourcePath);
        if (sourcePath.ends_with(".json"))
            source = Json::parse(source)["chat_template"].get<std::string>();
        auto t = ChatTemplate::parse(source, name);
        ASSERT_TRUE(t.ok());
        ChatRenderInput tokens;
        tokens.bosToken = info["bos_token"].get<std::string>();
        tokens.eosToken = info["eos_token"].get<std::string>();
        auto eot = inference::endOfTurnStrings(*t, tokens);
        ASSERT_TRUE(eot.ok()) << eot.error().toString();
        ASSERT_EQ(eot->size(), 1u);
        EXPECT_EQ(eot->front(), kExpected.at(name));
    }
    ChatRenderInput tokens;
    tokens.bosToken = "<s>";
    tokens.eosToken = "</s>";
    auto llama2 = ChatTemplate::builtin("llama2");
    ASSERT_TRUE(llama2.ok());
    auto eot = inference::endOfTurnStrings(*llama2, tokens);
    ASSERT_TRUE(eot.ok());
    EXPECT_EQ(*eot, std::vector<std::string>{"</s>"});

    auto drops = ChatTemplate::parse("{% for m in messages %}{{ m.role }}{% endfor %}");
    ASSERT_TRUE(drops.ok());
    EXPECT_FALSE(inference::endOfTurnStrings(*drops, tokens).ok());
}

}  // namespace
