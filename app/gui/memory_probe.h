// Host memory for the dashboard when no GPU is in use (Linux: /proc/meminfo). GPU figures come from the engine.
#pragma once

#include "ui/types.h"

#include <QByteArray>

namespace app {

// Parses /proc/meminfo text: MemTotal and MemAvailable (kB) into a host MemorySample; zeros when absent.
ui::MemorySample parseMeminfo(const QByteArray& meminfo, const QString& cpuName);
ui::MemorySample hostMemorySample(const QString& cpuName);

}  // namespace app
