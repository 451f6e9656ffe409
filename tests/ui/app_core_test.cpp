// app/gui helpers without the engine: settings persistence, the error sentences, the known-model list (the real
// resource file) and the host memory parser.
#include "app_settings.h"
#include "error_text.h"
#include "known_models.h"
#include "memory_probe.h"

#include <QCryptographicHash>
#include <QFile>
#include <QRegularExpression>
#include <QTemporaryDir>
#include <QTest>

using roundchat::ErrorCode;

class AppCoreTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void settingsRoundTripAndClamp() {
        QTemporaryDir dir;
        const QString ini = dir.filePath(QStringLiteral("s.ini"));
        {
            QSettings store(ini, QSettings::IniFormat);
            app::AppSettings settings(store);
            ui::SettingsValues v = settings.values();  // defaults on an empty file
            QCOMPARE(v.temperature, ui::SettingsValues{}.temperature);
            v.backend = ui::BackendChoice::Gpu;
            v.systemPrompt = QStringLiteral("Answer in French.");
            v.recallMass = 0.75;
            v.vramBudgetMb = 512;
            v.kvSharing = true;
            v.kvSharingSinkTokens = 4;
            v.kvSharingWindowTokens = 64;
            v.theme = ui::Theme::Light;
            v.shortcuts.insert(QStringLiteral("newChat"), QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_N));
            settings.setValues(v);
            settings.setModelPath(QStringLiteral("/models/a.gguf"));
            store.setValue(QStringLiteral("generation/temperature"), 9.0);  // out of range on disk
            store.setValue(QStringLiteral("ui/theme"), 42);
        }
        QSettings store(ini, QSettings::IniFormat);
        app::AppSettings settings(store);
        const ui::SettingsValues v = settings.values();
        QCOMPARE(int(v.backend), int(ui::BackendChoice::Gpu));
        QCOMPARE(v.systemPrompt, QStringLiteral("Answer in French."));
        QCOMPARE(v.recallMass, 0.75);
        QCOMPARE(v.vramBudgetMb, 512);
        QVERIFY(v.kvSharing);
        QCOMPARE(v.kvSharingSinkTokens, 4);
        QCOMPARE(v.kvSharingWindowTokens, 64);
        QCOMPARE(v.temperature, 2.0);                      // clamped
        QCOMPARE(int(v.theme), int(ui::Theme::System));    // unknown value: the default
        QCOMPARE(v.shortcuts.value(QStringLiteral("newChat")), QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_N));
        QCOMPARE(settings.modelPath(), QStringLiteral("/models/a.gguf"));
    }

    // A conversation's JSON overrides the defaults key by key; missing keys (older conversations store "{}"), wrong
    // types and broken JSON keep the default; values out of range are clamped.
    void conversationSettingsOverrideDefaults() {
        ui::SettingsValues defaults;
        defaults.temperature = 0.5;
        defaults.backend = ui::BackendChoice::Cpu;
        defaults.systemPrompt = QStringLiteral("app-wide prompt");
        ui::SettingsValues own = defaults;
        own.temperature = 1.25;
        own.topK = 7;
        own.roundAttention = false;
        own.watershedAuto = false;
        own.watershedLayer = 3;
        own.recallMass = 0.6;
        own.vramBudgetMb = 128;
        own.kvSharing = true;
        own.kvSharingSinkTokens = 8;
        own.kvSharingWindowTokens = 256;
        own.backend = ui::BackendChoice::Gpu;  // app-wide: not kept per conversation
        ui::ConversationInfo c;
        c.systemPrompt = QStringLiteral("conversation prompt");
        c.settingsJson = app::conversationSettingsJson(own);
        ui::SettingsValues got = app::conversationSettings(defaults, c);
        QCOMPARE(got.temperature, 1.25);
        QCOMPARE(got.topK, 7);
        QCOMPARE(got.roundAttention, false);
        QCOMPARE(got.watershedAuto, false);
        QCOMPARE(got.watershedLayer, 3);
        QCOMPARE(got.recallMass, 0.6);
        QCOMPARE(got.vramBudgetMb, 128);
        QVERIFY(got.kvSharing);
        QCOMPARE(got.kvSharingSinkTokens, 8);
        QCOMPARE(got.kvSharingWindowTokens, 256);
        QCOMPARE(int(got.backend), int(ui::BackendChoice::Cpu));
        QCOMPARE(got.systemPrompt, QStringLiteral("conversation prompt"));

        c.settingsJson = QStringLiteral(
            R"({"temperature": 7, "topK": "many", "roundAttention": false, "kvSharingWindowTokens": 0})");
        got = app::conversationSettings(defaults, c);
        QCOMPARE(got.temperature, 2.0);  // clamped
        QCOMPARE(got.kvSharingWindowTokens, 1);
        QVERIFY(!got.kvSharing);  // off unless the conversation turned it on
        QCOMPARE(got.topK, defaults.topK);
        QCOMPARE(got.roundAttention, false);
        QCOMPARE(got.maxNewTokens, defaults.maxNewTokens);
        for (const QString& json : {QStringLiteral("{}"), QStringLiteral("not json"), QString()}) {
            c.settingsJson = json;
            got = app::conversationSettings(defaults, c);
            QCOMPARE(got.temperature, 0.5);
            QCOMPARE(got.roundAttention, defaults.roundAttention);
        }
    }

    void everyErrorHasAnActionableSentence() {
        for (int c = 1; c <= int(ErrorCode::GpuError); ++c) {
            for (app::ErrorContext context : {app::ErrorContext::LoadModel, app::ErrorContext::Generate,
                                              app::ErrorContext::Database, app::ErrorContext::Download}) {
                const app::UserMessage m = app::ErrorText::forCode(ErrorCode(c), context, QStringLiteral("x.gguf"));
                QVERIFY2(m.text.size() > 5, qPrintable(QString::number(c)));
                QVERIFY(m.actionText.isEmpty() == m.actionId.isEmpty());
            }
        }
        const app::UserMessage oom =
            app::ErrorText::forCode(ErrorCode::OutOfGpuMemory, app::ErrorContext::LoadModel, QStringLiteral("big"));
        QVERIFY(oom.text.contains(QStringLiteral("“big”")));
        QCOMPARE(oom.actionId, app::kActionUseCpu);
        QCOMPARE(app::ErrorText::forCode(ErrorCode::CorruptFile, app::ErrorContext::Database).actionId,
                 app::kActionShowDataFolder);
        QVERIFY(app::ErrorText::forCode(ErrorCode::Ok, app::ErrorContext::Generate).text.isEmpty());
    }

    void knownModelsResourceIsValid() {
        QString error;
        const QList<ui::KnownModel> models = app::loadKnownModels(&error);
        QVERIFY2(!models.isEmpty(), qPrintable(error));
        QStringList files;
        for (const ui::KnownModel& m : models) {
            files << m.fileName;
            if (!m.bundled) {
                QVERIFY(m.url.endsWith(m.fileName));
                continue;
            }
            // A bundled model is the file in resources/models/, and its listed checksum is that file's.
            QFile file(QStringLiteral(ROUNDCHAT_SOURCE_DIR "/resources/models/") + m.fileName);
            QVERIFY2(file.open(QIODevice::ReadOnly), qPrintable(m.fileName));
            QCryptographicHash hash(QCryptographicHash::Sha256);
            QVERIFY(hash.addData(&file));
            QCOMPARE(QString::fromLatin1(hash.result().toHex()), m.sha256);
        }
        QVERIFY(files.contains(QStringLiteral("roundchat-recall-16M.gguf")));
        QVERIFY(files.contains(QStringLiteral("tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf")));
        QVERIFY(files.contains(QStringLiteral("tinyllama-1.1b-chat-v1.0.Q8_0.gguf")));
        for (const ui::KnownModel& m : models) {
            if (m.fileName == QStringLiteral("llama-68m-chat-v1.q8_0.gguf"))
                QCOMPARE(m.sha256, QStringLiteral("cdd6bad08258f53c637c233309c3b41ccd91907359364aaa02e18df54c34b836"));
            if (m.fileName.contains(QStringLiteral("Q4_K_M")) || m.fileName.contains(QStringLiteral("Q8_0")))
                QVERIFY(m.sha256.isEmpty());  // not published: the app must not claim to verify these
        }
    }

    void malformedModelListsAreRejected() {
        QString error;
        QVERIFY(app::parseKnownModels("{", &error).isEmpty());
        QVERIFY(!error.isEmpty());
        const QByteArray escape = R"({"models":[{"id":"a","file":"../evil.gguf","url":"https://x/a","sha256":""}]})";
        QVERIFY(app::parseKnownModels(escape, &error).isEmpty());
        const QByteArray badSha = R"({"models":[{"id":"a","file":"a.gguf","url":"https://x/a","sha256":"xyz"}]})";
        QVERIFY(app::parseKnownModels(badSha, &error).isEmpty());
        const QByteArray noUrl = R"({"models":[{"id":"a","file":"a.gguf","url":"","sha256":""}]})";
        QVERIFY(app::parseKnownModels(noUrl, &error).isEmpty());
        const QByteArray bundledWithUrl =
            R"({"models":[{"id":"a","file":"a.gguf","url":"https://x/a","bundled":true,"sha256":""}]})";
        QVERIFY(app::parseKnownModels(bundledWithUrl, &error).isEmpty());
        const QByteArray ok = R"({"models":[{"id":"a","file":"a.gguf","url":"https://x/a","sha256":""}]})";
        QCOMPARE(app::parseKnownModels(ok, &error).size(), 1);
        const QByteArray bundled = R"({"models":[{"id":"b","file":"b.gguf","url":"","bundled":true,"sha256":""}]})";
        const QList<ui::KnownModel> b = app::parseKnownModels(bundled, &error);
        QCOMPARE(b.size(), 1);
        QVERIFY(b.first().bundled);
    }

    void meminfoIsParsed() {
        const ui::MemorySample s = app::parseMeminfo("MemTotal:       16000 kB\nMemFree: 100 kB\n"
                                                     "MemAvailable:    8000 kB\n",
                                                     QStringLiteral("cpu"));
        QVERIFY(!s.gpu);
        QCOMPARE(s.totalBytes, quint64(16000) * 1024);
        QCOMPARE(s.freeBytes, quint64(8000) * 1024);
    }
};

QTEST_GUILESS_MAIN(AppCoreTest)
#include "app_core_test.moc"
