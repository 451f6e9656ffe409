// Edits a SettingsValues: backend, stored-KV cap, system prompt and sampling, Round Attention, theme and keyboard
// shortcuts. The app-wide dialog edits everything, its generation and Round Attention values being the defaults of
// new conversations; the conversation dialog shows only those per-conversation tabs. The caller persists the result
// (app/gui's AppSettings and the conversation's row). GUI thread only.
#pragma once

#include <QDialog>

#include "ui/types.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QKeySequenceEdit;
class QLabel;
class QPlainTextEdit;
class QSpinBox;

namespace ui {

class SettingsDialog : public QDialog {
    Q_OBJECT
public:
    enum class Scope { App, Conversation };

    // conversationTitle: names the conversation in Scope::Conversation.
    explicit SettingsDialog(const SettingsValues& values, QWidget* parent = nullptr, Scope scope = Scope::App,
                            const QString& conversationTitle = {});

    SettingsValues values() const;
    Scope scope() const { return m_scope; }
    // Shows how much KV is stored now, next to the cap.
    void setStoredKvBytes(quint64 bytes);

private:
    void updateEnabled();

    Scope m_scope;
    SettingsValues m_initial;
    QComboBox* m_backend;
    QSpinBox* m_context;
    QSpinBox* m_kvCap;
    QLabel* m_kvStored;
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
    QCheckBox* m_kvSharing;
    QSpinBox* m_kvSharingSink;
    QSpinBox* m_kvSharingWindow;
    QMap<QString, QKeySequenceEdit*> m_shortcuts;
};

// Applies the theme to the whole application: System keeps the platform palette, Light/Dark set Fusion palettes.
void applyTheme(Theme theme);

}  // namespace ui
