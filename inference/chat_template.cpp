// Chat templates: the public API over the Jinja-subset parser and interpreter (jinja_*.cpp), the built-in
// defaults, the fallback choice and end-of-turn detection.
#include "inference/chat_template.h"

#include <algorithm>
#include <exception>
#include <new>

#include "jinja.h"

namespace inference {

namespace {

struct BuiltinTemplate {
    std::string_view name;
    std::string_view source;
};

// chatml and zephyr are the chat_template fields of Felladrin/Llama-68M-Chat-v1 and TinyLlama-1.1B-Chat-v1.0.
// llama2 is the Llama 2 chat format: [INST] turns, the system prompt folded into the first one between <<SYS>>
// markers, each answer closed by eos_token. bos_token opens every turn but the first, because the tokenizer adds
// BOS at the start of the prompt itself.
constexpr BuiltinTemplate kBuiltins[] = {
    {"chatml",
     "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
     "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"},
    {"zephyr",
     "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + "
     "eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + eos_token }}\n"
     "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n"
     "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}"},
    {"llama2",
     "{%- if messages and messages[0]['role'] == 'system' -%}\n"
     "    {%- set system_message = messages[0]['content'] | trim -%}\n"
     "    {%- set loop_messages = messages[1:] -%}\n"
     "{%- else -%}\n"
     "    {%- set loop_messages = messages -%}\n"
     "{%- endif -%}\n"
     "{%- for message in loop_messages -%}\n"
     "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
     "        {{- raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') -}}\n"
     "    {%- endif -%}\n"
     "    {%- if message['role'] == 'user' -%}\n"
     "        {%- set content = message['content'] | trim -%}\n"
     "        {%- if loop.first and system_message is defined -%}\n"
     "            {%- set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + content -%}\n"
     "        {%- endif -%}\n"
     "        {{- ('' if loop.first else bos_token) + '[INST] ' + content + ' [/INST]' -}}\n"
     "    {%- else -%}\n"
     "        {{- ' ' + message['content'] | trim + ' ' + eos_token -}}\n"
     "    {%- endif -%}\n"
     "{%- endfor -%}\n"},
};

constexpr std::string_view kFallbackName = "chatml";

}  // namespace

Result<ChatTemplate> ChatTemplate::parse(std::string_view source, std::string name) {
    auto program = std::make_shared<jinja::Program>();
    program->name = name.empty() ? "chat template" : std::move(name);
    program->source = std::string(source);
    try {
        jinja::parseProgram(*program);
    } catch (const jinja::Failure& f) {
        return Error{ErrorCode::TemplateError, program->name + ": " + f.message};
    } catch (const std::bad_alloc&) {
        return Error{ErrorCode::OutOfMemory, program->name + ": out of memory while parsing"};
    } catch (const std::exception& e) {  // a bug of ours; still no exception leaves the library
        return Error{ErrorCode::TemplateError, program->name + ": internal error while parsing: " + e.what()};
    }
    return ChatTemplate(std::move(program));
}

Result<ChatTemplate> ChatTemplate::builtin(std::string_view name) {
    for (const BuiltinTemplate& b : kBuiltins)
        if (b.name == name)
            return parse(b.source, std::string(b.name));
    std::string known;
    for (std::string_view n : builtinTemplateNames()) known += (known.empty() ? "" : ", ") + std::string(n);
    return Error{ErrorCode::InvalidArgument,
                 "no built-in chat template named '" + std::string(name) + "' (known: " + known + ")"};
}

std::vector<std::string_view> builtinTemplateNames() {
    std::vector<std::string_view> names;
    for (const BuiltinTemplate& b : kBuiltins) names.push_back(b.name);
    return names;
}

Result<std::string> ChatTemplate::render(const ChatRenderInput& input) const {
    try {
        return jinja::renderProgram(*m_program, input);
    } catch (const jinja::Failure& f) {
        return Error{ErrorCode::TemplateError, m_program->name + ": " + f.message};
    } catch (const std::bad_alloc&) {
        return Error{ErrorCode::OutOfMemory, m_program->name + ": out of memory while rendering"};
    } catch (const std::exception& e) {
        return Error{ErrorCode::TemplateError, m_program->name + ": internal error while rendering: " + e.what()};
    }
}

const std::string& ChatTemplate::name() const {
    return m_program->name;
}
const std::string& ChatTemplate::source() const {
    return m_program->source;
}

Result<TemplateChoice> chooseTemplate(const std::optional<std::string>& ggufTemplate) {
    if (ggufTemplate && !ggufTemplate->empty()) {
        Result<ChatTemplate> own = ChatTemplate::parse(*ggufTemplate, "model");
        if (!own)
            return own.error();
        return TemplateChoice{std::move(*own), "model", false, {}};
    }
    Result<ChatTemplate> fallback = ChatTemplate::builtin(kFallbackName);
    if (!fallback)
        return fallback.error();
    return TemplateChoice{std::move(*fallback), std::string(kFallbackName), true,
                          "This model has no chat template; using the ChatML default."};
}

Result<std::vector<std::string>> endOfTurnStrings(const ChatTemplate& tmpl, const ChatRenderInput& tokens) {
    // Sentinels no template rewrites: plain letters, no whitespace to trim, no markup.
    static constexpr std::string_view kUser1 = "RoundChatSentinelUserOne";
    static constexpr std::string_view kAssistant = "RoundChatSentinelAssistant";
    static constexpr std::string_view kUser2 = "RoundChatSentinelUserTwo";
    ChatRenderInput input = tokens;
    input.messages = {
        {"user", std::string(kUser1)}, {"assistant", std::string(kAssistant)}, {"user", std::string(kUser2)}};
    input.addGenerationPrompt = false;
    Result<std::string> text = tmpl.render(input);
    if (!text)
        return text.error();
    const std::size_t a = text->find(kAssistant);
    const std::size_t u = a == std::string::npos ? std::string::npos : text->find(kUser2, a);
    if (u == std::string::npos)
        return Error{ErrorCode::TemplateError, tmpl.name() +
                                                   ": the template drops message contents, so its "
                                                   "end-of-turn marker cannot be found"};
    std::string_view between = std::string_view(*text).substr(a + kAssistant.size(), u - a - kAssistant.size());
    between.remove_prefix(std::min(between.size(), between.find_first_not_of(" \t\r\n")));
    std::string_view marker;
    if (between.starts_with('<')) {
        const std::size_t close = between.find('>');
        marker = between.substr(0, close == std::string_view::npos ? between.size() : close + 1);
    } else {
        marker = between.substr(0, std::min(between.size(), between.find('\n')));
    }
    if (marker.empty())
        return std::vector<std::string>{};
    return std::vector<std::string>{std::string(marker)};
}

}  // namespace inference
