#include "ui/types.h"

#include <QCoreApplication>
#include <QStringList>

namespace ui {

QString formatBytes(quint64 bytes) {
    constexpr double kKb = 1000.0;
    const double b = double(bytes);
    if (b < kKb)
        return QCoreApplication::translate("ui", "%1 B").arg(bytes);
    if (b < kKb * kKb)
        return QCoreApplication::translate("ui", "%1 KB").arg(b / kKb, 0, 'f', 0);
    if (b < kKb * kKb * kKb)
        return QCoreApplication::translate("ui", "%1 MB").arg(b / (kKb * kKb), 0, 'f', 0);
    return QCoreApplication::translate("ui", "%1 GB").arg(b / (kKb * kKb * kKb), 0, 'f', 1);
}

QString badgeText(const RecallBadge& badge) {
    if (!badge.valid)
        return {};
    QStringList parts;
    if (badge.roundAttention) {
        QStringList rounds;
        for (int r : badge.recalledRounds)
            rounds << QString::number(r);
        parts << QCoreApplication::translate("ui", "recalled rounds %1 of %2")
                     .arg(rounds.isEmpty() ? QStringLiteral("–") : rounds.join(QStringLiteral(", ")))
                     .arg(badge.roundsTotal);
    } else {
        parts << QCoreApplication::translate("ui", "full KV · %n round(s)", nullptr, badge.roundsTotal);
    }
    parts << QCoreApplication::translate("ui", "KV in VRAM %1").arg(formatBytes(badge.kvBytesInVram));
    if (badge.roundAttention && badge.kvBytesFull > 0 && badge.kvBytesInVram <= badge.kvBytesFull) {
        const double saved = 100.0 * double(badge.kvBytesFull - badge.kvBytesInVram) / double(badge.kvBytesFull);
        parts << QCoreApplication::translate("ui", "saved %1%").arg(qRound(saved));
    }
    return parts.join(QStringLiteral(" · "));
}

QList<ShortcutAction> shortcutActions() {
    auto tr = [](const char* s) { return QCoreApplication::translate("ui", s); };
    return {
        {QStringLiteral("newChat"), tr("New conversation"), QKeySequence(QKeySequence::New)},
        {QStringLiteral("stop"), tr("Stop generating"), QKeySequence(Qt::Key_Escape)},
        {QStringLiteral("regenerate"), tr("Regenerate last answer"), QKeySequence(Qt::CTRL | Qt::Key_R)},
        {QStringLiteral("editLast"), tr("Edit last message"), QKeySequence(Qt::CTRL | Qt::Key_E)},
        {QStringLiteral("copyAnswer"), tr("Copy selected message"), QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_C)},
        {QStringLiteral("focusInput"), tr("Focus the message box"), QKeySequence(Qt::CTRL | Qt::Key_L)},
        {QStringLiteral("focusSearch"), tr("Search conversations"), QKeySequence(Qt::CTRL | Qt::Key_K)},
        {QStringLiteral("historySearch"), tr("Search all history"), QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_F)},
        {QStringLiteral("showChat"), tr("Show chat"), QKeySequence(Qt::CTRL | Qt::Key_1)},
        {QStringLiteral("showHistory"), tr("Show history"), QKeySequence(Qt::CTRL | Qt::Key_2)},
        {QStringLiteral("showMemory"), tr("Show VRAM dashboard"), QKeySequence(Qt::CTRL | Qt::Key_3)},
        {QStringLiteral("showModels"), tr("Show models"), QKeySequence(Qt::CTRL | Qt::Key_4)},
        {QStringLiteral("settings"), tr("Settings"), QKeySequence(Qt::CTRL | Qt::Key_Comma)},
        {QStringLiteral("conversationSettings"), tr("Settings of this conversation"),
         QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_S)},
        {QStringLiteral("prevBranch"), tr("Previous branch"), QKeySequence(Qt::ALT | Qt::Key_Left)},
        {QStringLiteral("nextBranch"), tr("Next branch"), QKeySequence(Qt::ALT | Qt::Key_Right)},
    };
}

QKeySequence shortcutFor(const SettingsValues& settings, const QString& id) {
    if (auto it = settings.shortcuts.find(id); it != settings.shortcuts.end())
        return it.value();
    for (const ShortcutAction& a : shortcutActions())
        if (a.id == id)
            return a.defaultSequence;
    return {};
}

}  // namespace ui
