#include "memory_probe.h"

#include <QFile>

namespace app {

ui::MemorySample parseMeminfo(const QByteArray& meminfo, const QString& cpuName) {
    ui::MemorySample s;
    s.gpu = false;
    s.deviceName = cpuName;
    constexpr quint64 kKiB = 1024;
    for (const QByteArray& line : meminfo.split('\n')) {
        const QList<QByteArray> f = line.simplified().split(' ');
        if (f.size() < 2)
            continue;
        if (f[0] == "MemTotal:")
            s.totalBytes = f[1].toULongLong() * kKiB;
        else if (f[0] == "MemAvailable:")
            s.freeBytes = f[1].toULongLong() * kKiB;
    }
    return s;
}

ui::MemorySample hostMemorySample(const QString& cpuName) {
    QFile f(QStringLiteral("/proc/meminfo"));
    if (!f.open(QIODevice::ReadOnly))
        return parseMeminfo({}, cpuName);
    return parseMeminfo(f.readAll(), cpuName);
}

}  // namespace app
