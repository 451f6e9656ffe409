#include "app_settings.h"

#include <QJsonDocument>
#include <QJsonObject>

namespace app {

namespace {
// Keys are stored on disk: never rename one.
const QString kBackend = QStringLiteral("engine/backend");
const QString kContext = QStringLiteral("engine/contextLength");
const QString kSystemPrompt = QStringLiteral("generation/systemPrompt");
const QString kTemperature = QStringLiteral("generation/temperature");
const QString kTopP = QStringLiteral("generation/topP");
const QString kTopK = QStringLiteral("generation/topK");
const QString kRepeatPenalty = QStringLiteral("generation/repeatPenalty");
const QString kMaxNewTokens = QStringLiteral("generation/maxNewTokens");
const QString kRoundAttention = QStringLiteral("rounds/enabled");
const QString kWatershedAuto = QStringLiteral("rounds/watershedAuto");
const QString kWatershedLayer = QStringLiteral("rounds/watershedLayer");
const QString kRecallMass = QStringLiteral("rounds/recallMass");
const QString kKeepLatest = QStringLiteral("rounds/keepLatestRounds");
const QString kMaxRecalled = QStringLiteral("rounds/maxRecalledRounds");
const QString kVramBudget = QStringLiteral("rounds/vramBudgetMb");
const QString kKvSharing = QStringLiteral("rounds/kvSharing");
const QString kKvSharingSink = QStringLiteral("rounds/kvSharingSinkTokens");
const QString kKvSharingWindow = QStringLiteral("rounds/kvSharingWindowTokens");
const QString kTheme = QStringLiteral("ui/theme");
const QString kShortcutGroup = QStringLiteral("shortcuts");
const QString kModelPath = QStringLiteral("model/path");
const QString kBannerDismissed = QStringLiteral("ui/tinyModelBannerDismissed");
const QString kGeometry = QStringLiteral("ui/geometry");
const QString kLastConversation = QStringLiteral("ui/lastConversation");

// JSON keys of the per-conversation settings (stored in the database: never rename one).
template <typename T>
struct JsonKey {
    const char* key;
    T ui::SettingsValues::*member;
};
constexpr JsonKey<double> kJsonDoubles[] = {
    {"temperature", &ui::SettingsValues::temperature},   {"topP", &ui::SettingsValues::topP},
    {"repeatPenalty", &ui::SettingsValues::repeatPenalty}, {"recallMass", &ui::SettingsValues::recallMass}};
constexpr JsonKey<int> kJsonInts[] = {
    {"topK", &ui::SettingsValues::topK},
    {"maxNewTokens", &ui::SettingsValues::maxNewTokens},
    {"watershedLayer", &ui::SettingsValues::watershedLayer},
    {"keepLatestRounds", &ui::SettingsValues::keepLatestRounds},
    {"maxRecalledRounds", &ui::SettingsValues::maxRecalledRounds},
    {"vramBudgetMb", &ui::SettingsValues::vramBudgetMb},
    {"kvSharingSinkTokens", &ui::SettingsValues::kvSharingSinkTokens},
    {"kvSharingWindowTokens", &ui::SettingsValues::kvSharingWindowTokens}};
constexpr JsonKey<bool> kJsonBools[] = {{"roundAttention", &ui::SettingsValues::roundAttention},
                                        {"watershedAuto", &ui::SettingsValues::watershedAuto},
                                        {"kvSharing", &ui::SettingsValues::kvSharing}};

template <typename E>
E enumValue(const QSettings& s, const QString& key, E fallback, E last) {
    const int v = s.value(key, int(fallback)).toInt();
    return v >= 0 && v <= int(last) ? E(v) : fallback;
}

// The ranges the settings dialog allows, for values read from a file or the database.
ui::SettingsValues sanitized(ui::SettingsValues v) {
    v.contextLength = std::max(0, v.contextLength);
    v.temperature = std::clamp(v.temperature, 0.0, 2.0);
    v.topP = std::clamp(v.topP, 0.0, 1.0);
    v.topK = std::max(0, v.topK);
    v.repeatPenalty = std::clamp(v.repeatPenalty, 1.0, 2.0);
    v.maxNewTokens = std::max(1, v.maxNewTokens);
    v.watershedLayer = std::max(1, v.watershedLayer);
    v.recallMass = std::clamp(v.recallMass, 0.1, 1.0);
    v.keepLatestRounds = std::max(0, v.keepLatestRounds);
    v.maxRecalledRounds = std::max(1, v.maxRecalledRounds);
    v.vramBudgetMb = std::max(0, v.vramBudgetMb);
    v.kvSharingSinkTokens = std::max(0, v.kvSharingSinkTokens);
    v.kvSharingWindowTokens = std::max(1, v.kvSharingWindowTokens);
    return v;
}
}  // namespace

ui::SettingsValues AppSettings::values() const {
    const ui::SettingsValues d;
    ui::SettingsValues v;
    v.backend = enumValue(m_store, kBackend, d.backend, ui::BackendChoice::Gpu);
    v.contextLength = m_store.value(kContext, d.contextLength).toInt();
    v.systemPrompt = m_store.value(kSystemPrompt, d.systemPrompt).toString();
    v.temperature = m_store.value(kTemperature, d.temperature).toDouble();
    v.topP = m_store.value(kTopP, d.topP).toDouble();
    v.topK = m_store.value(kTopK, d.topK).toInt();
    v.repeatPenalty = m_store.value(kRepeatPenalty, d.repeatPenalty).toDouble();
    v.maxNewTokens = m_store.value(kMaxNewTokens, d.maxNewTokens).toInt();
    v.roundAttention = m_store.value(kRoundAttention, d.roundAttention).toBool();
    v.watershedAuto = m_store.value(kWatershedAuto, d.watershedAuto).toBool();
    v.watershedLayer = m_store.value(kWatershedLayer, d.watershedLayer).toInt();
    v.recallMass = m_store.value(kRecallMass, d.recallMass).toDouble();
    v.keepLatestRounds = m_store.value(kKeepLatest, d.keepLatestRounds).toInt();
    v.maxRecalledRounds = m_store.value(kMaxRecalled, d.maxRecalledRounds).toInt();
    v.vramBudgetMb = m_store.value(kVramBudget, d.vramBudgetMb).toInt();
    v.kvSharing = m_store.value(kKvSharing, d.kvSharing).toBool();
    v.kvSharingSinkTokens = m_store.value(kKvSharingSink, d.kvSharingSinkTokens).toInt();
    v.kvSharingWindowTokens = m_store.value(kKvSharingWindow, d.kvSharingWindowTokens).toInt();
    v.theme = enumValue(m_store, kTheme, d.theme, ui::Theme::Dark);
    m_store.beginGroup(kShortcutGroup);
    for (const QString& key : m_store.childKeys())
        v.shortcuts.insert(key, QKeySequence(m_store.value(key).toString(), QKeySequence::PortableText));
    m_store.endGroup();
    return sanitized(v);
}

void AppSettings::setValues(const ui::SettingsValues& v) {
    m_store.setValue(kBackend, int(v.backend));
    m_store.setValue(kContext, v.contextLength);
    m_store.setValue(kSystemPrompt, v.systemPrompt);
    m_store.setValue(kTemperature, v.temperature);
    m_store.setValue(kTopP, v.topP);
    m_store.setValue(kTopK, v.topK);
    m_store.setValue(kRepeatPenalty, v.repeatPenalty);
    m_store.setValue(kMaxNewTokens, v.maxNewTokens);
    m_store.setValue(kRoundAttention, v.roundAttention);
    m_store.setValue(kWatershedAuto, v.watershedAuto);
    m_store.setValue(kWatershedLayer, v.watershedLayer);
    m_store.setValue(kRecallMass, v.recallMass);
    m_store.setValue(kKeepLatest, v.keepLatestRounds);
    m_store.setValue(kMaxRecalled, v.maxRecalledRounds);
    m_store.setValue(kVramBudget, v.vramBudgetMb);
    m_store.setValue(kKvSharing, v.kvSharing);
    m_store.setValue(kKvSharingSink, v.kvSharingSinkTokens);
    m_store.setValue(kKvSharingWindow, v.kvSharingWindowTokens);
    m_store.setValue(kTheme, int(v.theme));
    m_store.remove(kShortcutGroup);
    m_store.beginGroup(kShortcutGroup);
    for (auto it = v.shortcuts.begin(); it != v.shortcuts.end(); ++it)
        m_store.setValue(it.key(), it.value().toString(QKeySequence::PortableText));
    m_store.endGroup();
}

QString conversationSettingsJson(const ui::SettingsValues& values) {
    QJsonObject o;
    for (const auto& k : kJsonDoubles)
        o.insert(QLatin1String(k.key), values.*k.member);
    for (const auto& k : kJsonInts)
        o.insert(QLatin1String(k.key), values.*k.member);
    for (const auto& k : kJsonBools)
        o.insert(QLatin1String(k.key), values.*k.member);
    return QString::fromUtf8(QJsonDocument(o).toJson(QJsonDocument::Compact));
}

ui::SettingsValues conversationSettings(const ui::SettingsValues& defaults, const ui::ConversationInfo& conversation) {
    ui::SettingsValues v = defaults;
    v.systemPrompt = conversation.systemPrompt;
    const QJsonObject o = QJsonDocument::fromJson(conversation.settingsJson.toUtf8()).object();
    for (const auto& k : kJsonDoubles)
        if (const QJsonValue j = o.value(QLatin1String(k.key)); j.isDouble())
            v.*k.member = j.toDouble();
    for (const auto& k : kJsonInts)
        if (const QJsonValue j = o.value(QLatin1String(k.key)); j.isDouble())
            v.*k.member = j.toInt();
    for (const auto& k : kJsonBools)
        if (const QJsonValue j = o.value(QLatin1String(k.key)); j.isBool())
            v.*k.member = j.toBool();
    return sanitized(v);
}

QString AppSettings::modelPath() const { return m_store.value(kModelPath).toString(); }
void AppSettings::setModelPath(const QString& path) { m_store.setValue(kModelPath, path); }
bool AppSettings::tinyModelBannerDismissed() const { return m_store.value(kBannerDismissed, false).toBool(); }
void AppSettings::setTinyModelBannerDismissed(bool dismissed) { m_store.setValue(kBannerDismissed, dismissed); }
QByteArray AppSettings::windowGeometry() const { return m_store.value(kGeometry).toByteArray(); }
void AppSettings::setWindowGeometry(const QByteArray& geometry) { m_store.setValue(kGeometry, geometry); }
qint64 AppSettings::lastConversation() const { return m_store.value(kLastConversation, 0).toLongLong(); }
void AppSettings::setLastConversation(qint64 id) { m_store.setValue(kLastConversation, id); }

}  // namespace app
