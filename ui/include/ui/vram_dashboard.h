// Live memory view: a stacked area chart of VRAM (weights, resident KV, recalled KV, scratch, free) over the last
// samples, and a bar chart of the KV bytes Round Attention saved per answer. Without a GPU it says so and charts host
// memory (used/free) instead. GUI thread only.
#pragma once

#include <QWidget>

#include "ui/types.h"

class QAreaSeries;
class QBarSeries;
class QBarSet;
class QBarCategoryAxis;
class QChart;
class QLabel;
class QLineSeries;
class QValueAxis;

namespace ui {

class VramDashboard : public QWidget {
    Q_OBJECT
public:
    static constexpr int kHistorySamples = 120;   // one per second: the last two minutes
    static constexpr int kSavedHistory = 20;      // answers shown in the savings chart

    explicit VramDashboard(QWidget* parent = nullptr);

    void addSample(const MemorySample& sample);
    // Records what one answer would have held with full KV and what it held.
    void addAnswer(const RecallBadge& badge);

    QString headline() const;
    int sampleCount() const { return int(m_samples.size()); }
    int answerCount() const { return int(m_saved.size()); }

private:
    void rebuildMemoryChart();
    void rebuildSavedChart();

    QList<MemorySample> m_samples;
    QList<double> m_saved;       // MB saved per answer
    QLabel* m_title;
    QLabel* m_summary;
    QChart* m_memoryChart;
    QList<QLineSeries*> m_bounds;  // cumulative upper bounds, one per stacked part
    QList<QAreaSeries*> m_areas;
    QValueAxis* m_memX;
    QValueAxis* m_memY;
    QChart* m_savedChart;
    QBarSet* m_savedSet;
    QBarSeries* m_savedSeries;
    QBarCategoryAxis* m_savedX;
    QValueAxis* m_savedY;
    bool m_gpuLayout = true;
};

}  // namespace ui
