// The RoundChat desktop app: parses the command line, registers the cross-thread value types and starts the
// controller. User data (database, downloaded models) lives under QStandardPaths::AppDataLocation (the XDG data
// directory, ~/.local/share/RoundChat/RoundChat), never in the install prefix, unless --data-dir names another folder.
#include "app_controller.h"
#include "smoke_test.h"
#include "worker_types.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QFileInfo>
#include <QSettings>
#include <QStandardPaths>
#include <QTemporaryDir>

#include <cstdio>
#include <memory>
#include <optional>

namespace {

constexpr int kSmokeTimeoutMs = 120000;

struct Options {
    QString modelPath;
    QString dataDir;               // empty: AppDataLocation
    std::optional<QString> smoke;  // --smoke-test MESSAGE
};

void setIdentity() {
    QCoreApplication::setApplicationName(QStringLiteral("RoundChat"));
    QCoreApplication::setOrganizationName(QStringLiteral("RoundChat"));
    QCoreApplication::setApplicationVersion(QStringLiteral(ROUNDCHAT_VERSION));
}

int fail(const QString& message) {
    std::fprintf(stderr, "roundchat: %s\n", qPrintable(message));
    return 2;
}

// The command line is parsed before the GUI exists, so --help and --version work without a display. Returns the
// exit code when the app must not start.
std::optional<int> parseCommandLine(int argc, char* argv[], Options& options) {
    QCoreApplication probe(argc, argv);
    setIdentity();
    QCommandLineParser parser;
    parser.setApplicationDescription(
        QCoreApplication::translate("main", "Local LLM chat with Round Attention: only the rounds relevant to "
                                            "each question are kept in VRAM."));
    parser.addHelpOption();
    parser.addVersionOption();
    const QCommandLineOption model(
        QStringLiteral("model"),
        QCoreApplication::translate("main", "Load the GGUF model at <path> instead of the last one used."),
        QStringLiteral("path"));
    const QCommandLineOption dataDir(
        QStringLiteral("data-dir"),
        QCoreApplication::translate("main", "Keep the database, downloaded models and settings in <dir> instead of "
                                            "the XDG data and config directories."),
        QStringLiteral("dir"));
    const QCommandLineOption smoke(
        QStringLiteral("smoke-test"),
        QCoreApplication::translate("main", "Headless check: start on the offscreen platform with a temporary data "
                                            "folder (or --data-dir), load the model (the bundled one unless --model), "
                                            "send <message>, print the answer and exit; non-zero on any failure or "
                                            "after %1 s.").arg(kSmokeTimeoutMs / 1000),
        QStringLiteral("message"));
    parser.addOptions({model, dataDir, smoke});
    parser.addPositionalArgument(QStringLiteral("model.gguf"),
                                 QCoreApplication::translate("main", "A GGUF model to load (same as --model)."),
                                 QStringLiteral("[model.gguf]"));
    // Qt's own -platform and -style are accepted here and applied by QApplication below.
    parser.setSingleDashWordOptionMode(QCommandLineParser::ParseAsLongOptions);
    for (const char* qtOption : {"platform", "style"}) {
        QCommandLineOption o(QString::fromLatin1(qtOption), {}, QStringLiteral("value"));
        o.setFlags(QCommandLineOption::HiddenFromHelp);
        parser.addOption(o);
    }
    parser.process(probe);

    const QStringList positional = parser.positionalArguments();
    if (positional.size() > 1 || (!positional.isEmpty() && parser.isSet(model)))
        return fail(QCoreApplication::translate("main", "give one model, either as --model or as an argument"));
    options.modelPath = positional.isEmpty() ? parser.value(model) : positional.front();
    if (!options.modelPath.isEmpty()) {
        if (!QFileInfo::exists(options.modelPath))
            return fail(QCoreApplication::translate("main", "no model file at %1").arg(options.modelPath));
        options.modelPath = QFileInfo(options.modelPath).absoluteFilePath();
    }
    if (parser.isSet(dataDir))
        options.dataDir = QDir(parser.value(dataDir)).absolutePath();
    if (parser.isSet(smoke))
        options.smoke = parser.value(smoke);
    return std::nullopt;
}

}  // namespace

int main(int argc, char* argv[]) {
    Options options;
    if (const std::optional<int> exitCode = parseCommandLine(argc, argv, options))
        return *exitCode;

    // The smoke test runs without a display and never touches the user's data or settings.
    std::unique_ptr<QTemporaryDir> smokeDir;
    if (options.smoke) {
        qputenv("QT_QPA_PLATFORM", "offscreen");
        if (options.dataDir.isEmpty()) {
            smokeDir = std::make_unique<QTemporaryDir>();
            if (!smokeDir->isValid())
                return fail(QCoreApplication::translate("main", "cannot create a temporary folder: %1")
                                .arg(smokeDir->errorString()));
            options.dataDir = smokeDir->path();
        }
    }

    QApplication application(argc, argv);
    setIdentity();
    QApplication::setDesktopFileName(QStringLiteral("io.github.roundchat.RoundChat"));

    app::registerWorkerTypes();
    // With --data-dir (or in the smoke test) everything lives in that folder, settings included.
    const std::unique_ptr<QSettings> settings =
        options.dataDir.isEmpty()
            ? std::make_unique<QSettings>()
            : std::make_unique<QSettings>(options.dataDir + QStringLiteral("/settings.ini"), QSettings::IniFormat);
    const QString dataDir = options.dataDir.isEmpty()
                                ? QStandardPaths::writableLocation(QStandardPaths::AppDataLocation)
                                : options.dataDir;
    app::AppController controller(*settings, dataDir, options.modelPath);
    std::unique_ptr<app::SmokeTest> smokeTest;
    if (options.smoke)
        smokeTest = std::make_unique<app::SmokeTest>(controller, *options.smoke, kSmokeTimeoutMs);
    controller.start();
    return QApplication::exec();
}
