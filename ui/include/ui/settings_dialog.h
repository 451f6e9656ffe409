// Edits a SettingsValues: backend, system prompt and sampling, Round Attention, theme and keyboard shortcuts.
// The caller persists the result (app/gui's AppSettings). GUI thread only.
#pragma once

#include <QDialog>

#include "ui/types.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QKeySequenceEdit;
class QPlainTextEdit;
class QSpinBox;

namespace ui {

class SettingsDialog : public QDialog {
    Q_OBJECT
public:
    explicit SettingsDialog(const SettingsValues& values, QWidget* parent = nullptr);

    SettingsValues values() const;

private:
    void updateEnabled();

    SettingsValues m_initial;
    QComboBox* m_backend;
    QSpinBox* m_context;
    QComboBox* m_theme;
    QPlainTextEdit* m_systemPrompt;
    QDoubleSpinBox* m_temperature;
    QDoubleSpinBox* m_topP;
    QSpinBox* m_topK;
    QDoubleSpinBox* m_repeatPenalty;
    QSpinBox* m_maxTokens;
    QCheckBox* m_roundAttention;
    QCheckBox* m_watershedAuto;
    QSpinBox* m_watershed;
    QDoubleSpinBox* m_recallMass;
    QSpinBox* m_keepRounds;
    QSpinBox* m_maxRecalled;
    QSpinBox* m_vramBudget;
    QMap<QString, QKeySequenceEdit*> m_shortcuts;
};

// Applies the theme to the whole application: System keeps the platform palette, Light/Dark set Fusion palettes.
void applyTheme(Theme theme);

}  // namespace ui
