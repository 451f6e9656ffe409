#include "smoke_test.h"

#include "app_controller.h"
#include "ui/chat_view.h"
#include "ui/message_list_model.h"

#include <QCoreApplication>
#include <QKeyEvent>
#include <QListView>

#include <cstdio>

namespace app {

namespace {
constexpr int kPollMs = 20;
}  // namespace

SmokeTest::SmokeTest(AppController& controller, const QString& message, int timeoutMs)
    : m_controller(controller), m_message(message) {
    m_clock.start();
    connect(&controller, &AppController::modelReady, this, &SmokeTest::send);
    connect(&controller, &AppController::errorShown, this,
            [this](const QString& text) { finish(1, tr("roundchat: smoke test failed: %1").arg(text)); });
    m_poll.setInterval(kPollMs);
    connect(&m_poll, &QTimer::timeout, this, &SmokeTest::checkAnswer);
    m_deadline.setSingleShot(true);
    connect(&m_deadline, &QTimer::timeout, this, [this, timeoutMs] {
        finish(1, tr("roundchat: smoke test timed out after %1 s waiting for %2")
                      .arg(timeoutMs / 1000)
                      .arg(m_poll.isActive() ? tr("the answer") : tr("the model to load")));
    });
    m_deadline.start(timeoutMs);
}

void SmokeTest::send(const ModelInfo& info) {
    if (m_poll.isActive())
        return;
    m_model = info;
    m_loadMs = m_clock.elapsed();
    ui::ChatInput* input = m_controller.window().chat()->input();
    input->setPlainText(m_message);
    QKeyEvent enter(QEvent::KeyPress, Qt::Key_Return, Qt::NoModifier);
    QCoreApplication::sendEvent(input, &enter);
    m_poll.start();
}

void SmokeTest::checkAnswer() {
    const auto* messages =
        qobject_cast<const ui::MessageListModel*>(m_controller.window().chat()->list()->model());
    if (messages->rowCount() != 2 || messages->isStreaming() || messages->messageAt(1).id == 0)
        return;
    const QString answer = messages->messageAt(1).text;
    std::printf("%s\n", qPrintable(answer));
    finish(0, tr("roundchat smoke test OK: %1 (%2) on %3, loaded in %4 ms, answered %5 characters in %6 ms total")
                  .arg(m_model.name, m_model.path, m_model.gpu ? m_model.deviceName : tr("the CPU"))
                  .arg(m_loadMs)
                  .arg(answer.size())
                  .arg(m_clock.elapsed()));
}

void SmokeTest::finish(int exitCode, const QString& line) {
    if (m_done)
        return;
    m_done = true;
    m_poll.stop();
    m_deadline.stop();
    std::fprintf(exitCode == 0 ? stdout : stderr, "%s\n", qPrintable(line));
    std::fflush(stdout);
    // Queued: an error shown during controller.start() comes before the event loop runs, where exit() is ignored.
    QTimer::singleShot(0, qApp, [exitCode] { QCoreApplication::exit(exitCode); });
}

}  // namespace app
