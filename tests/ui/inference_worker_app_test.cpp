// The inference worker on the test thread with the bundled stories260K model: how the settings map onto the
// session's options, and the KV-sharing calibration it loads (or the notice it gives when there is none).
#include "inference_worker.h"
#include "worker_types.h"

#include "inference/calibration.h"
#include "inference/session.h"

#include <QSignalSpy>
#include <QTemporaryDir>
#include <QTest>

#include <numeric>

namespace {

const QString kModel = QStringLiteral(ROUNDCHAT_SOURCE_DIR "/resources/models/stories260K.gguf");

}  // namespace

class InferenceWorkerTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void initTestCase() { app::registerWorkerTypes(); }

    void sessionOptionsMapSettings() {
        ui::SettingsValues s;
        s.temperature = 0.25;
        s.roundAttention = true;
        s.watershedAuto = false;
        s.watershedLayer = 9;  // past the model: its last layer
        s.vramBudgetMb = 3;
        s.kvSharing = true;
        s.kvSharingSinkTokens = 4;
        s.kvSharingWindowTokens = 64;
        const app::ModelCalibration calibration{2, {0, 1, 3}};
        inference::SessionOptions o = app::sessionOptions(s, 5, calibration);
        QCOMPARE(o.sampler.temperature, 0.25f);
        QCOMPARE(int(o.rounds.mode), int(inference::KvMode::RoundAttention));
        QCOMPARE(o.rounds.watershedLayer, 4);
        QCOMPARE(o.rounds.vramBudgetBytes, uint64_t(3'000'000));
        QVERIFY(o.rounds.sharing.enabled);
        QCOMPARE(o.rounds.sharing.sinkTokens, 4);
        QCOMPARE(o.rounds.sharing.windowTokens, 64);
        QCOMPARE(o.rounds.sharing.groupStarts, (std::vector<int>{0, 1, 3}));

        s.watershedAuto = true;
        s.kvSharing = false;
        o = app::sessionOptions(s, 5, calibration);
        QCOMPARE(o.rounds.watershedLayer, 2);  // the calibrated one
        QVERIFY(!o.rounds.sharing.enabled);
        QVERIFY(o.rounds.sharing.groupStarts.empty());
    }

    // Sharing on without a calibration: answers run (nothing shared) and the worker says so once per load; with the
    // model's calibration file, the groups are used and nothing is said.
    void sharingWithoutCalibrationSaysSoOnce() {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        const QString calibrationDir = dir.filePath(QStringLiteral("calibration"));
        app::InferenceWorker worker;
        QSignalSpy loaded(&worker, &app::InferenceWorker::modelLoaded);
        QSignalSpy done(&worker, &app::InferenceWorker::generationDone);
        QSignalSpy failed(&worker, &app::InferenceWorker::failed);
        QSignalSpy notices(&worker, &app::InferenceWorker::notice);
        ui::SettingsValues s;
        s.temperature = 0.0;
        s.maxNewTokens = 8;
        s.kvSharing = true;
        s.kvSharingSinkTokens = 0;  // every token but the newest distant, so that sharing shows in a short chat
        s.kvSharingWindowTokens = 1;
        worker.applySettings(s);  // before the load: no session, nothing to say yet
        worker.loadModel(app::LoadRequest{1, kModel, ui::BackendChoice::Cpu, 0, calibrationDir});
        QCOMPARE(loaded.size(), 1);
        QCOMPARE(notices.size(), 0);

        quint64 request = 2;
        auto ask = [&](qint64 conversation) {
            app::GenerateRequest g;
            g.requestId = request++;
            g.conversationId = conversation;
            g.userText = QStringLiteral("Once upon a time");
            worker.generate(g);
        };
        ask(1);
        QCOMPARE(failed.size(), 0);
        QCOMPARE(done.size(), 1);
        QCOMPARE(notices.size(), 1);
        QVERIFY(notices.at(0).at(0).toString().contains(QStringLiteral("roundchat-cli calibrate")));
        ask(2);                   // a new session for another conversation
        worker.applySettings(s);  // and new options for it
        QCOMPARE(done.size(), 2);
        QCOMPARE(notices.size(), 1);

        const std::string fingerprint = loaded.at(0).at(0).value<app::ModelInfo>().fingerprint.toStdString();
        inference::KvSharingCalibration cal;
        cal.nLayers = loaded.at(0).at(0).value<app::ModelInfo>().layerCount;
        cal.windowTokens = 1;
        cal.js.assign(size_t(cal.nLayers * cal.nLayers), 0.0f);
        cal.groupStarts = {0, 1, 3};
        QVERIFY(inference::saveKvSharingCalibration(calibrationDir.toStdString(), fingerprint, cal));
        worker.loadModel(app::LoadRequest{request++, kModel, ui::BackendChoice::Cpu, 0, calibrationDir});
        QCOMPARE(loaded.size(), 2);
        ask(1);
        QCOMPARE(failed.size(), 0);
        QCOMPARE(done.size(), 3);
        QCOMPARE(notices.size(), 1);
        // The same answer (greedy) now holds the distant keys of layers 2 and 4 once, in layers 1 and 3.
        const auto inVram = [&](int i) { return done.at(i).at(0).value<app::GenerationDone>().recall.kvBytesInVram; };
        QVERIFY2(inVram(2) < inVram(0), qPrintable(QStringLiteral("%1 >= %2").arg(inVram(2)).arg(inVram(0))));

        // A calibration that found no layers alike: every layer its own group, nothing shared, said once.
        cal.groupStarts.resize(size_t(cal.nLayers));
        std::iota(cal.groupStarts.begin(), cal.groupStarts.end(), 0);
        QVERIFY(inference::saveKvSharingCalibration(calibrationDir.toStdString(), fingerprint, cal));
        worker.loadModel(app::LoadRequest{request++, kModel, ui::BackendChoice::Cpu, 0, calibrationDir});
        ask(1);
        QCOMPARE(done.size(), 4);
        QCOMPARE(notices.size(), 2);
        QVERIFY(notices.at(1).at(0).toString().contains(QStringLiteral("nothing is shared")));
    }
};

QTEST_GUILESS_MAIN(InferenceWorkerTest)
#include "inference_worker_app_test.moc"
