#include "app_settings.h"

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
const QString kTheme = QStringLiteral("ui/theme");
const QString kShortcutGroup = QStringLiteral("shortcuts");
const QString kModelPath = QStringLiteral("model/path");
const QString kBannerDismissed = QStringLiteral("ui/tinyModelBannerDismissed");
const QString kGeometry = QStringLiteral("ui/geometry");
const QString kLastConversation = QStringLiteral("ui/lastConversation");

template <typename E>
E enumValue(const QSettings& s, const QString& key, E fallback, E last) {
    const int v = s.value(key, int(fallback)).toInt();
    return v >= 0 && v <= int(last) ? E(v) : fallback;
}
}  // namespace

ui::SettingsValues AppSettings::values() const {
    const ui::SettingsValues d;
    ui::SettingsValues v;
    v.backend = enumValue(m_store, kBackend, d.backend, ui::BackendChoice::Gpu);
    v.contextLength = std::max(0, m_store.value(kContext, d.contextLength).toInt());
    v.systemPrompt = m_store.value(kSystemPrompt, d.systemPrompt).toString();
    v.temperature = std::clamp(m_store.value(kTemperature, d.temperature).toDouble(), 0.0, 2.0);
    v.topP = std::clamp(m_store.value(kTopP, d.topP).toDouble(), 0.0, 1.0);
    v.topK = std::max(0, m_store.value(kTopK, d.topK).toInt());
    v.repeatPenalty = std::clamp(m_store.value(kRepeatPenalty, d.repeatPenalty).toDouble(), 1.0, 2.0);
    v.maxNewTokens = std::max(1, m_store.value(kMaxNewTokens, d.maxNewTokens).toInt());
    v.roundAttention = m_store.value(kRoundAttention, d.roundAttention).toBool();
    v.watershedAuto = m_store.value(kWatershedAuto, d.watershedAuto).toBool();
    v.watershedLayer = std::max(1, m_store.value(kWatershedLayer, d.watershedLayer).toInt());
    v.recallMass = std::clamp(m_store.value(kRecallMass, d.recallMass).toDouble(), 0.1, 1.0);
    v.keepLatestRounds = std::max(0, m_store.value(kKeepLatest, d.keepLatestRounds).toInt());
    v.maxRecalledRounds = std::max(1, m_store.value(kMaxRecalled, d.maxRecalledRounds).toInt());
    v.vramBudgetMb = std::max(0, m_store.value(kVramBudget, d.vramBudgetMb).toInt());
    v.theme = enumValue(m_store, kTheme, d.theme, ui::Theme::Dark);
    m_store.beginGroup(kShortcutGroup);
    for (const QString& key : m_store.childKeys())
        v.shortcuts.insert(key, QKeySequence(m_store.value(key).toString(), QKeySequence::PortableText));
    m_store.endGroup();
    return v;
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
    m_store.setValue(kTheme, int(v.theme));
    m_store.remove(kShortcutGroup);
    m_store.beginGroup(kShortcutGroup);
    for (auto it = v.shortcuts.begin(); it != v.shortcuts.end(); ++it)
        m_store.setValue(it.key(), it.value().toString(QKeySequence::PortableText));
    m_store.endGroup();
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
