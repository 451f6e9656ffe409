// The headless smoke test of `roundchat --smoke-test MESSAGE`: once the real app has loaded its model, types MESSAGE
// into the chat input and presses Enter like a user, waits until the answer has streamed and been saved, prints it
// with a one-line summary and exits the event loop with 0. An error shown by the app, or the timeout, exits with 1
// and says why on stderr. GUI thread only.
#pragma once

#include "worker_types.h"

#include <QElapsedTimer>
#include <QObject>
#include <QTimer>

namespace app {

class AppController;

class SmokeTest : public QObject {
    Q_OBJECT
public:
    // `controller` is borrowed and must outlive this object; connect before controller.start().
    SmokeTest(AppController& controller, const QString& message, int timeoutMs);

private:
    void send(const ModelInfo& info);
    void checkAnswer();
    void finish(int exitCode, const QString& line);

    AppController& m_controller;
    QString m_message;
    ModelInfo m_model;
    QTimer m_poll;      // the answer is done when it is no longer streaming and has its database id
    QTimer m_deadline;
    QElapsedTimer m_clock;
    qint64 m_loadMs = 0;
    bool m_done = false;
};

}  // namespace app
