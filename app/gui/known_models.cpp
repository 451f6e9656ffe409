#include "known_models.h"

#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QRegularExpression>

namespace app {

QList<ui::KnownModel> parseKnownModels(const QByteArray& json, QString* error) {
    QJsonParseError parseError;
    const QJsonDocument doc = QJsonDocument::fromJson(json, &parseError);
    if (doc.isNull()) {
        *error = parseError.errorString();
        return {};
    }
    static const QRegularExpression sha(QStringLiteral("^([0-9a-f]{64})?$"));
    QList<ui::KnownModel> models;
    for (const QJsonValue& v : doc.object().value(QStringLiteral("models")).toArray()) {
        const QJsonObject o = v.toObject();
        ui::KnownModel m;
        m.id = o.value(QStringLiteral("id")).toString();
        m.name = o.value(QStringLiteral("name")).toString();
        m.description = o.value(QStringLiteral("description")).toString();
        m.fileName = o.value(QStringLiteral("file")).toString();
        m.url = o.value(QStringLiteral("url")).toString();
        m.sha256 = o.value(QStringLiteral("sha256")).toString().toLower();
        m.sizeBytes = quint64(o.value(QStringLiteral("approxBytes")).toDouble());
        m.chat = o.value(QStringLiteral("chat")).toBool(true);
        m.bundled = o.value(QStringLiteral("bundled")).toBool(false);
        // A file name with a path separator could write outside the models folder. Bundled models have no url;
        // every other one is fetched over https.
        const bool urlOk = m.bundled ? m.url.isEmpty() : m.url.startsWith(QStringLiteral("https://"));
        if (m.id.isEmpty() || m.fileName.isEmpty() || m.fileName.contains(QLatin1Char('/')) ||
            m.fileName.contains(QLatin1Char('\\')) || !urlOk || !sha.match(m.sha256).hasMatch()) {
            *error = QStringLiteral("invalid model entry “%1”").arg(m.id);
            return {};
        }
        models.append(m);
    }
    if (models.isEmpty())
        *error = QStringLiteral("no models listed");
    return models;
}

QList<ui::KnownModel> loadKnownModels(QString* error) {
    QFile file(kKnownModelsResource);
    if (!file.open(QIODevice::ReadOnly)) {
        *error = file.errorString();
        return {};
    }
    return parseKnownModels(file.readAll(), error);
}

}  // namespace app
