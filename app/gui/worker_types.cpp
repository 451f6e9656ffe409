#include "worker_types.h"

namespace app {

void registerWorkerTypes() {
    qRegisterMetaType<ui::RecallBadge>();
    qRegisterMetaType<ui::MessageData>();
    qRegisterMetaType<ui::ConversationInfo>();
    qRegisterMetaType<ui::SearchHit>();
    qRegisterMetaType<ui::MemorySample>();
    qRegisterMetaType<ui::SettingsValues>();
    qRegisterMetaType<QList<ui::ConversationInfo>>();
    qRegisterMetaType<LoadRequest>();
    qRegisterMetaType<LoadProgress>();
    qRegisterMetaType<ModelInfo>();
    qRegisterMetaType<GenerateRequest>();
    qRegisterMetaType<TokenChunk>();
    qRegisterMetaType<RoundKv>();
    qRegisterMetaType<RestoreData>();
    qRegisterMetaType<RestoreDone>();
    qRegisterMetaType<GenerationDone>();
    qRegisterMetaType<ErrorInfo>();
    qRegisterMetaType<ConversationMessages>();
    qRegisterMetaType<SearchResults>();
    qRegisterMetaType<MessageSaved>();
    qRegisterMetaType<ExportResult>();
    qRegisterMetaType<KvUsage>();
}

}  // namespace app
