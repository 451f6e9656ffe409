#include "ui/vram_dashboard.h"

#include <QAreaSeries>
#include <QBarCategoryAxis>
#include <QBarSeries>
#include <QBarSet>
#include <QChart>
#include <QChartView>
#include <QLabel>
#include <QLineSeries>
#include <QValueAxis>
#include <QVBoxLayout>

#include <array>
#include <cmath>

namespace ui {

namespace {
constexpr double kMb = 1000.0 * 1000.0;

struct Part {
    const char* name;
    QColor color;
};
// Stacking order, bottom to top. Host mode uses the first and last only (used, free).
const Part kParts[] = {
    {QT_TRANSLATE_NOOP("ui::VramDashboard", "Weights"), QColor(66, 133, 244)},
    {QT_TRANSLATE_NOOP("ui::VramDashboard", "Resident KV (lower layers)"), QColor(52, 168, 83)},
    {QT_TRANSLATE_NOOP("ui::VramDashboard", "Recalled KV"), QColor(251, 188, 5)},
    {QT_TRANSLATE_NOOP("ui::VramDashboard", "Scratch"), QColor(234, 67, 53)},
    {QT_TRANSLATE_NOOP("ui::VramDashboard", "Free"), QColor(180, 180, 180)},
};
constexpr int kPartCount = int(std::size(kParts));

// The stacked values of one sample, in MB, in kParts order.
std::array<double, kPartCount> partsOf(const MemorySample& s) {
    if (!s.gpu)
        return {double(s.totalBytes - std::min(s.freeBytes, s.totalBytes)) / kMb, 0, 0, 0, double(s.freeBytes) / kMb};
    const quint64 known = s.weightBytes + s.residentKvBytes + s.recalledKvBytes + s.scratchBytes;
    // Memory used by others (the desktop, other processes) shows as scratch, so the stack reaches total.
    const quint64 used = s.totalBytes - std::min(s.freeBytes, s.totalBytes);
    const quint64 other = used > known ? used - known : 0;
    return {double(s.weightBytes) / kMb, double(s.residentKvBytes) / kMb, double(s.recalledKvBytes) / kMb,
            double(s.scratchBytes + other) / kMb, double(s.freeBytes) / kMb};
}

// Sets `axis` to [0, a round number >= top] with at most five ticks at round steps (1, 2 or 5 x 10^k), labelled with
// just enough decimals to tell them apart; top <= 0 (no data yet, or nothing saved) gives [0, 1].
void setNiceRange(QValueAxis* axis, double top) {
    if (!(top > 0.0))
        top = 1.0;
    const double rough = top / 4.0;  // about four intervals
    const double magnitude = std::pow(10.0, std::floor(std::log10(rough)));
    double step = 10.0 * magnitude;
    for (double m : {1.0, 2.0, 5.0}) {
        if (m * magnitude >= rough) {
            step = m * magnitude;
            break;
        }
    }
    const int intervals = std::max(1, int(std::ceil(top / step - 1e-9)));
    axis->setRange(0.0, intervals * step);
    axis->setTickCount(intervals + 1);
    const int decimals = std::max(0, -int(std::floor(std::log10(step) + 1e-9)));
    axis->setLabelFormat(QStringLiteral("%.") + QString::number(decimals) + QStringLiteral("f"));
}

QChartView* makeView(QChart* chart, QWidget* parent) {
    chart->setAnimationOptions(QChart::NoAnimation);
    chart->legend()->setAlignment(Qt::AlignBottom);
    chart->setBackgroundRoundness(6);
    auto* view = new QChartView(chart, parent);
    view->setRenderHint(QPainter::Antialiasing);
    view->setMinimumHeight(220);
    return view;
}
}  // namespace

VramDashboard::VramDashboard(QWidget* parent) : QWidget(parent) {
    m_title = new QLabel(tr("No model loaded yet"), this);
    QFont big = m_title->font();
    big.setPointSizeF(big.pointSizeF() * 1.35);
    big.setBold(true);
    m_title->setFont(big);
    m_summary = new QLabel(this);
    m_summary->setWordWrap(true);
    m_summary->setTextInteractionFlags(Qt::TextSelectableByMouse);

    m_memoryChart = new QChart;
    m_memoryChart->setTitle(tr("Memory over the last two minutes (MB)"));
    m_memX = new QValueAxis;
    m_memX->setRange(-kHistorySamples + 1, 0);
    m_memX->setLabelFormat(QStringLiteral("%d s"));
    m_memY = new QValueAxis;
    m_memoryChart->addAxis(m_memX, Qt::AlignBottom);
    m_memoryChart->addAxis(m_memY, Qt::AlignLeft);
    QLineSeries* lower = nullptr;
    for (const Part& part : kParts) {
        auto* upper = new QLineSeries(m_memoryChart);
        auto* area = new QAreaSeries(upper, lower);
        area->setName(tr(part.name));
        area->setColor(part.color);
        area->setBorderColor(part.color.darker(120));
        m_memoryChart->addSeries(area);
        area->attachAxis(m_memX);
        area->attachAxis(m_memY);
        m_bounds.append(upper);
        m_areas.append(area);
        lower = upper;
    }

    m_savedChart = new QChart;
    m_savedChart->setTitle(tr("KV kept out of VRAM per answer (MB)"));
    m_savedSet = new QBarSet(tr("Saved"));
    m_savedSet->setColor(kParts[1].color);
    m_savedSeries = new QBarSeries;
    m_savedSeries->append(m_savedSet);
    m_savedChart->addSeries(m_savedSeries);
    m_savedX = new QBarCategoryAxis;
    m_savedY = new QValueAxis;
    m_savedChart->addAxis(m_savedX, Qt::AlignBottom);
    m_savedChart->addAxis(m_savedY, Qt::AlignLeft);
    m_savedSeries->attachAxis(m_savedX);
    m_savedSeries->attachAxis(m_savedY);
    m_savedChart->legend()->hide();

    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(16, 12, 16, 12);
    layout->addWidget(m_title);
    layout->addWidget(m_summary);
    layout->addWidget(makeView(m_memoryChart, this), 3);
    layout->addWidget(makeView(m_savedChart, this), 2);
    rebuildMemoryChart();
    rebuildSavedChart();
}

QString VramDashboard::headline() const { return m_title->text(); }

void VramDashboard::addSample(const MemorySample& sample) {
    m_samples.append(sample);
    if (m_samples.size() > kHistorySamples)
        m_samples.removeFirst();
    if (sample.gpu) {
        m_title->setText(tr("%1 · %2 total").arg(sample.deviceName, formatBytes(sample.totalBytes)));
        m_summary->setText(tr("Weights %1 · resident KV %2 · recalled KV %3 · scratch %4 · free %5")
                               .arg(formatBytes(sample.weightBytes), formatBytes(sample.residentKvBytes),
                                    formatBytes(sample.recalledKvBytes), formatBytes(sample.scratchBytes),
                                    formatBytes(sample.freeBytes)));
    } else {
        m_title->setText(tr("No CUDA GPU in use: showing host memory"));
        m_summary->setText(tr("The model runs on the CPU (%1). Host memory: %2 total, %3 free. Round Attention "
                              "still limits how much KV is attended per answer.")
                               .arg(sample.deviceName.isEmpty() ? tr("CPU") : sample.deviceName,
                                    formatBytes(sample.totalBytes), formatBytes(sample.freeBytes)));
    }
    if (sample.gpu != m_gpuLayout) {
        m_gpuLayout = sample.gpu;
        m_areas.first()->setName(sample.gpu ? tr(kParts[0].name) : tr("Used"));
        for (int i = 1; i + 1 < kPartCount; ++i)
            m_areas[i]->setVisible(sample.gpu);
    }
    rebuildMemoryChart();
}

void VramDashboard::rebuildMemoryChart() {
    QList<QList<QPointF>> points(kPartCount);
    const int n = int(m_samples.size());
    double top = 0.0;
    for (int i = 0; i < n; ++i) {
        const auto parts = partsOf(m_samples[i]);
        double sum = 0.0;
        for (int p = 0; p < kPartCount; ++p) {
            sum += parts[p];
            points[p].append(QPointF(i - n + 1, sum));
        }
        top = std::max(top, sum);
    }
    for (int p = 0; p < kPartCount; ++p)
        m_bounds[p]->replace(points[p]);
    setNiceRange(m_memY, top);
}

void VramDashboard::addAnswer(const RecallBadge& badge) {
    if (!badge.valid)
        return;
    const quint64 saved = badge.kvBytesFull > badge.kvBytesInVram ? badge.kvBytesFull - badge.kvBytesInVram : 0;
    m_saved.append(double(saved) / kMb);
    if (m_saved.size() > kSavedHistory)
        m_saved.removeFirst();
    rebuildSavedChart();
}

void VramDashboard::rebuildSavedChart() {
    m_savedSet->remove(0, m_savedSet->count());
    QStringList labels;
    double top = 0.0;
    for (int i = 0; i < m_saved.size(); ++i) {
        m_savedSet->append(m_saved[i]);
        labels << QString::number(i + 1);
        top = std::max(top, m_saved[i]);
    }
    m_savedX->clear();
    m_savedX->append(labels.isEmpty() ? QStringList{tr("no answers yet")} : labels);
    setNiceRange(m_savedY, top);
}

}  // namespace ui
