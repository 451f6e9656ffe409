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

}  // namespace app
