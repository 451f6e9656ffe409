// Turns an ErrorCode into a translated sentence that tells the user what to do, plus an optional action button.
// The error's detail never reaches the user; callers log it (STYLE.md rule 12).
#pragma once

#include "roundchat/result.h"

#include <QCoreApplication>
#include <QString>

namespace app {

// Where the error happened: the same code needs different advice when loading a model or reading the database.
enum class ErrorContext { LoadModel, Generate, Database, Download, Import, Export };

struct UserMessage {
    QString text;
    QString actionText;   // empty: no action button
    QString actionId;     // what the button does; see kAction* below
};

inline const QString kActionOpenModel = QStringLiteral("openModel");
inline const QString kActionUseCpu = QStringLiteral("useCpu");
inline const QString kActionNewChat = QStringLiteral("newChat");
inline const QString kActionRetry = QStringLiteral("retry");
inline const QString kActionShowDataFolder = QStringLiteral("showDataFolder");
inline const QString kActionSettings = QStringLiteral("settings");

class ErrorText {
    Q_DECLARE_TR_FUNCTIONS(app::ErrorText)
public:
    // `subject` names the thing involved (a file name, a model name); it may be empty.
    static UserMessage forCode(roundchat::ErrorCode code, ErrorContext context, const QString& subject = {});
};

}  // namespace app
