// The RoundChat desktop app: parses the command line, registers the cross-thread value types and starts the
// controller. User data (database, downloaded models) lives under QStandardPaths::AppDataLocation.
#include "app_controller.h"
#include "worker_types.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QFileInfo>
#include <QSettings>
#include <QStandardPaths>

#include <cstdio>

namespace {

void setIdentity() {
    QCoreApplication::setApplicationName(QStringLiteral("RoundChat"));
    QCoreApplication::setOrganizationName(QStringLiteral("RoundChat"));
    QCoreApplication::setApplicationVersion(QStringLiteral(ROUNDCHAT_VERSION));
}

}  // namespace

int main(int argc, char* argv[]) {
    // The command line is parsed before the GUI exists, so --help and --version work without a display.
    QString modelPath;
    {
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
        parser.addOption(model);
        // Qt's own -platform and -style are accepted here and applied by QApplication below.
        parser.setSingleDashWordOptionMode(QCommandLineParser::ParseAsLongOptions);
        for (const char* qtOption : {"platform", "style"}) {
            QCommandLineOption o(QString::fromLatin1(qtOption), {}, QStringLiteral("value"));
            o.setFlags(QCommandLineOption::HiddenFromHelp);
            parser.addOption(o);
        }
        parser.process(probe);
        modelPath = parser.value(model);
        if (!modelPath.isEmpty()) {
            if (!QFileInfo::exists(modelPath)) {
                std::fprintf(stderr, "%s\n",
                             qPrintable(QCoreApplication::translate("main", "roundchat: no model file at %1")
                                            .arg(modelPath)));
                return 2;
            }
            modelPath = QFileInfo(modelPath).absoluteFilePath();
        }
    }

    QApplication application(argc, argv);
    setIdentity();
    QApplication::setDesktopFileName(QStringLiteral("roundchat"));

    app::registerWorkerTypes();
    QSettings settings;
    app::AppController controller(settings, QStandardPaths::writableLocation(QStandardPaths::AppDataLocation),
                                  modelPath);
    controller.start();
    return QApplication::exec();
}
