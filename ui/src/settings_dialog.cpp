#include "ui/settings_dialog.h"

#include <QApplication>
#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QKeySequenceEdit>
#include <QLabel>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QSpinBox>
#include <QStyle>
#include <QStyleFactory>
#include <QTabWidget>
#include <QVBoxLayout>

namespace ui {

namespace {

QDoubleSpinBox* doubleSpin(double lo, double hi, double step, int decimals, QWidget* parent) {
    auto* s = new QDoubleSpinBox(parent);
    s->setRange(lo, hi);
    s->setSingleStep(step);
    s->setDecimals(decimals);
    return s;
}

QSpinBox* intSpin(int lo, int hi, QWidget* parent, const QString& special = {}) {
    auto* s = new QSpinBox(parent);
    s->setRange(lo, hi);
    s->setSpecialValueText(special);
    return s;
}

}  // namespace

SettingsDialog::SettingsDialog(const SettingsValues& values, QWidget* parent, Scope scope,
                               const QString& conversationTitle)
    : QDialog(parent), m_scope(scope), m_initial(values) {
    const bool app = scope == Scope::App;
    setWindowTitle(app ? tr("Settings") : tr("Settings of “%1”").arg(conversationTitle));
    auto* tabs = new QTabWidget(this);

    auto* general = new QWidget(tabs);
    auto* gf = new QFormLayout(general);
    m_backend = new QComboBox(general);
    m_backend->addItem(tr("Automatic (GPU when available)"), int(BackendChoice::Auto));
    m_backend->addItem(tr("CPU"), int(BackendChoice::Cpu));
    m_backend->addItem(tr("GPU (CUDA)"), int(BackendChoice::Gpu));
    m_backend->setCurrentIndex(m_backend->findData(int(values.backend)));
    m_context = intSpin(0, 131072, general, tr("model default"));
    m_context->setSingleStep(512);
    m_context->setSuffix(tr(" tokens"));
    m_context->setValue(values.contextLength);
    m_theme = new QComboBox(general);
    m_theme->addItem(tr("Follow the system"), int(Theme::System));
    m_theme->addItem(tr("Light"), int(Theme::Light));
    m_theme->addItem(tr("Dark"), int(Theme::Dark));
    m_theme->setCurrentIndex(m_theme->findData(int(values.theme)));
    gf->addRow(tr("&Backend:"), m_backend);
    gf->addRow(tr("&Context length:"), m_context);
    gf->addRow(tr("&Theme:"), m_theme);
    gf->addRow(new QLabel(tr("Backend and context changes apply when the model is next loaded."), general));
    m_kvCap = intSpin(0, 1 << 24, general, tr("no cap"));
    m_kvCap->setObjectName(QStringLiteral("kvStorageCap"));
    m_kvCap->setSuffix(tr(" MB"));
    m_kvCap->setSingleStep(100);
    m_kvCap->setValue(values.kvStorageCapMb);
    m_kvStored = new QLabel(general);
    m_kvStored->setWordWrap(true);
    gf->addRow(tr("Cap on stored &KV:"), m_kvCap);
    gf->addRow(m_kvStored);
    setStoredKvBytes(0);
    const int generalTab = tabs->addTab(general, tr("&General"));

    auto* gen = new QWidget(tabs);
    auto* genf = new QFormLayout(gen);
    m_systemPrompt = new QPlainTextEdit(values.systemPrompt, gen);
    m_systemPrompt->setTabChangesFocus(true);
    m_systemPrompt->setPlaceholderText(tr("You are a helpful assistant."));
    m_temperature = doubleSpin(0.0, 2.0, 0.05, 2, gen);
    m_temperature->setValue(values.temperature);
    m_topP = doubleSpin(0.0, 1.0, 0.05, 2, gen);
    m_topP->setValue(values.topP);
    m_topK = intSpin(0, 1000, gen, tr("off"));
    m_topK->setValue(values.topK);
    m_repeatPenalty = doubleSpin(1.0, 2.0, 0.05, 2, gen);
    m_repeatPenalty->setValue(values.repeatPenalty);
    m_maxTokens = intSpin(1, 32768, gen);
    m_maxTokens->setValue(values.maxNewTokens);
    genf->addRow(tr("&System prompt:"), m_systemPrompt);
    genf->addRow(tr("T&emperature:"), m_temperature);
    genf->addRow(tr("Top-&p:"), m_topP);
    genf->addRow(tr("Top-&k:"), m_topK);
    genf->addRow(tr("&Repeat penalty:"), m_repeatPenalty);
    genf->addRow(tr("&Max answer length:"), m_maxTokens);
    genf->addRow(new QLabel(app ? tr("These are the defaults of new conversations. Each conversation keeps its own: "
                                     "change them with “Chat settings” under the message box.")
                                : tr("These apply to this conversation only; a new system prompt applies from the "
                                     "next message."),
                            gen));
    tabs->addTab(gen, tr("Ge&neration"));

    auto* ra = new QWidget(tabs);
    auto* raf = new QFormLayout(ra);
    m_roundAttention = new QCheckBox(tr("Recall only the rounds relevant to each question"), ra);
    m_roundAttention->setObjectName(QStringLiteral("roundAttention"));
    m_roundAttention->setChecked(values.roundAttention);
    m_watershedAuto = new QCheckBox(tr("Choose the watershed layer automatically"), ra);
    m_watershedAuto->setChecked(values.watershedAuto);
    m_watershed = intSpin(1, 200, ra);
    m_watershed->setValue(values.watershedLayer);
    m_recallMass = doubleSpin(0.1, 1.0, 0.05, 2, ra);
    m_recallMass->setValue(values.recallMass);
    m_keepRounds = intSpin(0, 64, ra);
    m_keepRounds->setValue(values.keepLatestRounds);
    m_maxRecalled = intSpin(1, 256, ra);
    m_maxRecalled->setValue(values.maxRecalledRounds);
    m_vramBudget = intSpin(0, 1 << 20, ra, tr("none"));
    m_vramBudget->setSuffix(tr(" MB"));
    m_vramBudget->setSingleStep(64);
    m_vramBudget->setValue(values.vramBudgetMb);
    raf->addRow(m_roundAttention);
    raf->addRow(m_watershedAuto);
    raf->addRow(tr("&Watershed layer:"), m_watershed);
    raf->addRow(tr("Recall &mass:"), m_recallMass);
    raf->addRow(tr("Latest rounds always &kept:"), m_keepRounds);
    raf->addRow(tr("Most rounds recalled by &score:"), m_maxRecalled);
    raf->addRow(tr("&VRAM budget for recalled KV:"), m_vramBudget);
    auto* raHelp = new QLabel(tr("Layers below the watershed keep the KV of every round in VRAM; above it, only the "
                                 "recalled rounds are brought back for each answer."),
                              ra);
    raHelp->setWordWrap(true);
    raf->addRow(raHelp);
    m_kvSharing = new QCheckBox(tr("Share &distant keys between layers (experimental)"), ra);
    m_kvSharing->setObjectName(QStringLiteral("kvSharing"));
    m_kvSharing->setChecked(values.kvSharing);
    m_kvSharingSink = intSpin(0, 131072, ra);
    m_kvSharingSink->setObjectName(QStringLiteral("kvSharingSinkTokens"));
    m_kvSharingSink->setSuffix(tr(" tokens"));
    m_kvSharingSink->setValue(values.kvSharingSinkTokens);
    m_kvSharingWindow = intSpin(1, 131072, ra);
    m_kvSharingWindow->setObjectName(QStringLiteral("kvSharingWindowTokens"));
    m_kvSharingWindow->setSuffix(tr(" tokens"));
    m_kvSharingWindow->setSingleStep(256);
    m_kvSharingWindow->setValue(values.kvSharingWindowTokens);
    raf->addRow(m_kvSharing);
    raf->addRow(tr("First tokens always kept (sin&ks):"), m_kvSharingSink);
    raf->addRow(tr("Recent w&indow always kept:"), m_kvSharingWindow);
    // The figures are docs/PERFORMANCE.md's "Inter-layer KV sharing" measurements; keep them in step.
    auto* sharingHelp = new QLabel(
        tr("Keys of distant tokens (past the first tokens and the recent window) are kept only in the first layer "
           "of each group of similar layers, which saves KV memory but changes answers. Measured on the "
           "stories260K model with layers 1–2 and 3–4 grouped (4 first tokens, a 64-token window): 86.9% of the "
           "KV kept, and 92.1% of next tokens the same as with full KV, against 99.8% for Round Attention alone. "
           "That loss was judged too high, so this is off by default. The layer groups come from running "
           "“roundchat-cli calibrate” on the model: without that calibration nothing is shared."),
        ra);
    sharingHelp->setObjectName(QStringLiteral("kvSharingHelp"));
    sharingHelp->setWordWrap(true);
    raf->addRow(sharingHelp);
    connect(m_roundAttention, &QCheckBox::toggled, this, &SettingsDialog::updateEnabled);
    connect(m_kvSharing, &QCheckBox::toggled, this, &SettingsDialog::updateEnabled);
    connect(m_watershedAuto, &QCheckBox::toggled, this, &SettingsDialog::updateEnabled);
    tabs->addTab(ra, tr("&Round Attention"));

    auto* keys = new QWidget(tabs);
    auto* kf = new QFormLayout(keys);
    for (const ShortcutAction& a : shortcutActions()) {
        auto* edit = new QKeySequenceEdit(shortcutFor(values, a.id), keys);
        edit->setObjectName(a.id);
        m_shortcuts.insert(a.id, edit);
        kf->addRow(a.label + QLatin1Char(':'), edit);
    }
    auto* resetKeys = new QPushButton(tr("Reset to &defaults"), keys);
    connect(resetKeys, &QPushButton::clicked, this, [this] {
        for (const ShortcutAction& a : shortcutActions())
            m_shortcuts.value(a.id)->setKeySequence(a.defaultSequence);
    });
    kf->addRow(resetKeys);
    const int keysTab = tabs->addTab(keys, tr("&Shortcuts"));
    // The conversation dialog edits only what a conversation keeps of its own.
    tabs->setTabVisible(generalTab, app);
    tabs->setTabVisible(keysTab, app);
    if (!app)
        tabs->setCurrentWidget(gen);

    auto* buttons = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
    connect(buttons, &QDialogButtonBox::accepted, this, &QDialog::accept);
    connect(buttons, &QDialogButtonBox::rejected, this, &QDialog::reject);
    auto* layout = new QVBoxLayout(this);
    layout->addWidget(tabs);
    layout->addWidget(buttons);
    updateEnabled();
    resize(560, 480);
}

void SettingsDialog::setStoredKvBytes(quint64 bytes) {
    m_kvStored->setText(tr("KV snapshots let a reopened conversation continue without reading it again. %1 stored "
                           "now; above the cap the oldest snapshots are freed first. Text is never deleted.")
                            .arg(formatBytes(bytes)));
}

void SettingsDialog::updateEnabled() {
    const bool on = m_roundAttention->isChecked();
    for (QWidget* w : std::initializer_list<QWidget*>{m_watershedAuto, m_recallMass, m_keepRounds, m_maxRecalled,
                                                      m_vramBudget})
        w->setEnabled(on);
    m_watershed->setEnabled(on && !m_watershedAuto->isChecked());
    m_kvSharingSink->setEnabled(m_kvSharing->isChecked());
    m_kvSharingWindow->setEnabled(m_kvSharing->isChecked());
}

SettingsValues SettingsDialog::values() const {
    SettingsValues v = m_initial;
    v.backend = BackendChoice(m_backend->currentData().toInt());
    v.contextLength = m_context->value();
    v.kvStorageCapMb = m_kvCap->value();
    v.theme = Theme(m_theme->currentData().toInt());
    v.systemPrompt = m_systemPrompt->toPlainText();
    v.temperature = m_temperature->value();
    v.topP = m_topP->value();
    v.topK = m_topK->value();
    v.repeatPenalty = m_repeatPenalty->value();
    v.maxNewTokens = m_maxTokens->value();
    v.roundAttention = m_roundAttention->isChecked();
    v.watershedAuto = m_watershedAuto->isChecked();
    v.watershedLayer = m_watershed->value();
    v.recallMass = m_recallMass->value();
    v.keepLatestRounds = m_keepRounds->value();
    v.maxRecalledRounds = m_maxRecalled->value();
    v.vramBudgetMb = m_vramBudget->value();
    v.kvSharing = m_kvSharing->isChecked();
    v.kvSharingSinkTokens = m_kvSharingSink->value();
    v.kvSharingWindowTokens = m_kvSharingWindow->value();
    v.shortcuts.clear();
    for (const ShortcutAction& a : shortcutActions()) {
        const QKeySequence seq = m_shortcuts.value(a.id)->keySequence();
        if (seq != a.defaultSequence)
            v.shortcuts.insert(a.id, seq);
    }
    return v;
}

void applyTheme(Theme theme) {
    auto* app = qobject_cast<QApplication*>(QCoreApplication::instance());
    if (!app)
        return;
    if (theme == Theme::System) {
        app->setPalette(app->style()->standardPalette());
        return;
    }
    app->setStyle(QStyleFactory::create(QStringLiteral("Fusion")));
    QPalette p;
    if (theme == Theme::Light) {
        p = app->style()->standardPalette();
        p.setColor(QPalette::Highlight, QColor(37, 99, 235));
        p.setColor(QPalette::Link, QColor(37, 99, 235));
    } else {
        const QColor window(32, 33, 36), base(24, 25, 28), text(230, 230, 232), button(45, 46, 50);
        p.setColor(QPalette::Window, window);
        p.setColor(QPalette::WindowText, text);
        p.setColor(QPalette::Base, base);
        p.setColor(QPalette::AlternateBase, window);
        p.setColor(QPalette::Text, text);
        p.setColor(QPalette::Button, button);
        p.setColor(QPalette::ButtonText, text);
        p.setColor(QPalette::ToolTipBase, button);
        p.setColor(QPalette::ToolTipText, text);
        p.setColor(QPalette::PlaceholderText, QColor(140, 140, 145));
        p.setColor(QPalette::Highlight, QColor(59, 130, 246));
        p.setColor(QPalette::HighlightedText, Qt::white);
        p.setColor(QPalette::Link, QColor(96, 165, 250));
        p.setColor(QPalette::Disabled, QPalette::Text, QColor(110, 110, 115));
        p.setColor(QPalette::Disabled, QPalette::ButtonText, QColor(110, 110, 115));
    }
    app->setPalette(p);
}

}  // namespace ui
