#include "error_text.h"

namespace app {

using roundchat::ErrorCode;

UserMessage ErrorText::forCode(ErrorCode code, ErrorContext context, const QString& subject) {
    const QString what = subject.isEmpty() ? tr("the file") : QStringLiteral("“%1”").arg(subject);
    switch (code) {
    case ErrorCode::Ok:
        return {};
    case ErrorCode::FileNotFound:
        if (context == ErrorContext::LoadModel)
            return {tr("The model file %1 no longer exists. Choose another model or download one.").arg(what),
                    tr("Choose model…"), kActionOpenModel};
        return {tr("%1 was not found. Check that it was not moved or deleted.").arg(what)};
    case ErrorCode::CorruptFile:
        if (context == ErrorContext::LoadModel)
            return {tr("%1 is not a valid GGUF model (the file is damaged or incomplete). Download it again or "
                       "choose another file.").arg(what),
                    tr("Choose model…"), kActionOpenModel};
        if (context == ErrorContext::Database)
            return {tr("The conversation database was damaged. RoundChat kept a copy of the damaged file and "
                       "recovered what it could; you can find the copy in the data folder."),
                    tr("Show data folder"), kActionShowDataFolder};
        if (context == ErrorContext::Import)
            return {tr("%1 is not a RoundChat JSON export, or it is damaged. Nothing was imported.").arg(what)};
        return {tr("%1 is damaged.").arg(what)};
    case ErrorCode::Unsupported:
        return {tr("%1 uses a model type or weight format RoundChat does not support yet. Try a Llama-family "
                   "GGUF with Q4_0, Q4_K_M, Q8_0, F16 or F32 weights.").arg(what),
                tr("Choose model…"), kActionOpenModel};
    case ErrorCode::OutOfMemory:
        return {tr("Not enough memory for %1. Close other programs or choose a smaller model.").arg(what),
                tr("Choose model…"), kActionOpenModel};
    case ErrorCode::OutOfGpuMemory:
        if (context == ErrorContext::Generate)
            return {tr("The GPU ran out of memory during this answer. Lower the VRAM budget or the context "
                       "length in Settings, or start a new conversation."),
                    tr("Settings…"), kActionSettings};
        return {tr("Not enough GPU memory for %1. Try a smaller model, a shorter context, or run on the CPU.")
                    .arg(what),
                tr("Use the CPU"), kActionUseCpu};
    case ErrorCode::NoGpu:
        return {tr("No usable NVIDIA GPU was found (or its driver is missing), so the model runs on the CPU. "
                   "Answers will be slower."),
                tr("Use the CPU"), kActionUseCpu};
    case ErrorCode::GpuError:
        return {tr("The GPU reported an error. Running on the CPU avoids it; updating the NVIDIA driver may fix "
                   "it."),
                tr("Use the CPU"), kActionUseCpu};
    case ErrorCode::ContextFull:
        return {tr("This conversation has filled the model's context window. Start a new conversation, turn on "
                   "Round Attention, or raise the context length in Settings."),
                tr("New conversation"), kActionNewChat};
    case ErrorCode::TemplateError:
        return {tr("The chat template inside %1 could not be used. The model may need a newer RoundChat; choose "
                   "another model.").arg(what),
                tr("Choose model…"), kActionOpenModel};
    case ErrorCode::Cancelled:
        return {tr("Stopped.")};
    case ErrorCode::DatabaseError:
        return {tr("RoundChat could not save to its database. Check that the disk is not full and the data folder "
                   "is writable; your text is kept in this window."),
                tr("Show data folder"), kActionShowDataFolder};
    case ErrorCode::DiskFull:
        return {tr("The disk is full. Free some space and try again."), tr("Retry"), kActionRetry};
    case ErrorCode::IoError:
        if (context == ErrorContext::Export)
            return {tr("Could not write %1. Choose another folder.").arg(what)};
        return {tr("Could not read or write %1. Check that it is accessible and the disk is healthy.").arg(what),
                tr("Retry"), kActionRetry};
    case ErrorCode::Mismatch:
        return {tr("The stored KV of this conversation was made with another model; it will be rebuilt from the "
                   "text when you continue.")};
    case ErrorCode::NetworkError:
        return {tr("The download of %1 was interrupted. Check the connection and resume; what was downloaded is "
                   "kept.").arg(what),
                tr("Resume"), kActionRetry};
    case ErrorCode::ChecksumMismatch:
        return {tr("The downloaded %1 does not match its published checksum, so it was deleted. Download it "
                   "again.").arg(what),
                tr("Download again"), kActionRetry};
    case ErrorCode::InvalidArgument:
        break;
    }
    return {tr("Something went wrong (%1). Please try again; if it keeps happening, report it with the log.")
                .arg(QString::fromLatin1(roundchat::errorCodeName(code)))};
}

}  // namespace app
