// Typed access to the persistent settings. Wraps a QSettings that the caller owns and passes by reference (no
// singleton), so tests use a temporary INI file. GUI thread only.
#pragma once

#include "ui/types.h"

#include <QSettings>

namespace app {

class AppSettings {
public:
    explicit AppSettings(QSettings& store) : m_store(store) {}

    ui::SettingsValues values() const;
    void setValues(const ui::SettingsValues& values);

    // The model loaded last; empty on first run.
    QString modelPath() const;
    void setModelPath(const QString& path);
    bool tinyModelBannerDismissed() const;
    void setTinyModelBannerDismissed(bool dismissed);
    QByteArray windowGeometry() const;
    void setWindowGeometry(const QByteArray& geometry);
    qint64 lastConversation() const;
    void setLastConversation(qint64 id);

    void sync() { m_store.sync(); }

private:
    QSettings& m_store;
};

// Per-conversation settings: the sampling and Round Attention fields of `values` as the JSON stored in the
// conversation's row (its system prompt has a column of its own).
QString conversationSettingsJson(const ui::SettingsValues& values);
// The settings a conversation runs with: `defaults` (the app-wide values), overridden by the conversation's system
// prompt and by each key of its settings JSON. Missing keys (older conversations store "{}") keep the default;
// out-of-range values are clamped as the app-wide ones are.
ui::SettingsValues conversationSettings(const ui::SettingsValues& defaults, const ui::ConversationInfo& conversation);

}  // namespace app
