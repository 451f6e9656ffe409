// The list of downloadable chat models, read from resources/models/known_models.json (embedded as
// :/models/known_models.json). Data, not code: adding a model or a checksum needs no rebuild of the logic.
#pragma once

#include "ui/types.h"

#include <QByteArray>
#include <QList>
#include <QString>

namespace app {

inline const QString kKnownModelsResource = QStringLiteral(":/models/known_models.json");

// Parses the JSON; on a malformed document returns an empty list and sets *error (for the log).
QList<ui::KnownModel> parseKnownModels(const QByteArray& json, QString* error);
// Reads kKnownModelsResource.
QList<ui::KnownModel> loadKnownModels(QString* error);

}  // namespace app
