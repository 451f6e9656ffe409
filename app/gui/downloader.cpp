#include "downloader.h"

#include "roundchat/result.h"

#include <QDir>
#include <QFileInfo>
#include <QNetworkAccessManager>
#include <QNetworkReply>

namespace app {

using roundchat::ErrorCode;

namespace {
constexpr int kHttpOk = 200;
constexpr int kHttpPartial = 206;
constexpr int kHttpRangeNotSatisfiable = 416;

int httpStatus(const QNetworkReply* reply) {
    return reply->attribute(QNetworkRequest::HttpStatusCodeAttribute).toInt();
}
}  // namespace

Downloader::Downloader(QNetworkAccessManager& network, QObject* parent) : QObject(parent), m_network(network) {}

Downloader::~Downloader() {
    for (auto& [id, j] : m_jobs) {
        if (j->reply) {
            j->reply->disconnect(this);
            j->reply->abort();
            j->reply->deleteLater();
        }
    }
}

Downloader::Job* Downloader::job(const QString& id) {
    const auto it = m_jobs.find(id);
    return it == m_jobs.end() ? nullptr : it->second.get();
}

void Downloader::start(const DownloadRequest& request) {
    if (isActive(request.id))
        return;
    auto j = std::make_unique<Job>();
    j->request = request;
    j->request.sha256 = request.sha256.trimmed().toLower();
    QDir().mkpath(QFileInfo(request.destination).absolutePath());
    j->file.setFileName(partPath(request.destination));
    if (!j->file.open(QIODevice::ReadWrite)) {
        Q_EMIT failed(request.id, int(ErrorCode::IoError),
                      QStringLiteral("cannot open %1: %2").arg(j->file.fileName(), j->file.errorString()));
        return;
    }
    j->offset = j->received = j->file.size();
    Job& ref = *j;
    m_jobs.emplace(request.id, std::move(j));
    if (ref.offset > 0)
        hashExistingPart(request.id);
    else
        sendRequest(ref);
}

void Downloader::hashExistingPart(const QString& id) {
    Job* j = job(id);
    if (!j)
        return;  // cancelled while hashing
    j->file.seek(j->hashed);
    const QByteArray chunk = j->file.read(std::min(kHashChunkBytes, j->offset - j->hashed));
    if (chunk.isEmpty()) {
        fail(id, int(ErrorCode::IoError), QStringLiteral("cannot read %1: %2").arg(j->file.fileName(),
                                                                                    j->file.errorString()));
        return;
    }
    j->hash.addData(chunk);
    j->hashed += chunk.size();
    if (j->hashed < j->offset) {
        QMetaObject::invokeMethod(this, [this, id] { hashExistingPart(id); }, Qt::QueuedConnection);
        return;
    }
    sendRequest(*j);
}

void Downloader::sendRequest(Job& j) {
    j.file.seek(j.offset);
    QNetworkRequest request(j.request.url);
    request.setAttribute(QNetworkRequest::RedirectPolicyAttribute, QNetworkRequest::NoLessSafeRedirectPolicy);
    if (j.offset > 0)
        request.setRawHeader("Range", "bytes=" + QByteArray::number(j.offset) + '-');
    j.reply = m_network.get(request);
    const QString id = j.request.id;
    connect(j.reply, &QNetworkReply::readyRead, this, [this, id] { onReadyRead(id); });
    connect(j.reply, &QNetworkReply::finished, this, [this, id] { onFinished(id); });
    Q_EMIT progress(id, j.received, -1);
}

void Downloader::onReadyRead(const QString& id) {
    Job* j = job(id);
    if (!j || !j->reply)
        return;
    const int status = httpStatus(j->reply);
    if (status != kHttpOk && status != kHttpPartial)
        return;  // an error page: onFinished reports it
    if (j->offset > 0 && status == kHttpOk && j->received == j->offset) {
        // The server ignored Range and sends the whole file: start the part over.
        j->file.resize(0);
        j->file.seek(0);
        j->hash.reset();
        j->offset = j->received = 0;
    }
    const QByteArray data = j->reply->readAll();
    if (j->file.write(data) != data.size()) {
        const bool full = j->file.error() == QFileDevice::ResourceError;
        fail(id, int(full ? ErrorCode::DiskFull : ErrorCode::IoError),
             QStringLiteral("cannot write %1: %2").arg(j->file.fileName(), j->file.errorString()));
        return;
    }
    j->hash.addData(data);
    j->received += data.size();
    const QVariant length = j->reply->header(QNetworkRequest::ContentLengthHeader);
    const qint64 total = length.isValid() ? j->offset + length.toLongLong() : -1;
    Q_EMIT progress(id, j->received, total);
}

void Downloader::onFinished(const QString& id) {
    Job* j = job(id);
    if (!j || !j->reply)
        return;
    QNetworkReply* reply = j->reply;
    reply->deleteLater();
    const int status = httpStatus(reply);
    if (status == kHttpRangeNotSatisfiable && !j->restarted) {
        // The part does not fit the file on the server (it changed, or the part is complete but unchecked): restart.
        j->restarted = true;
        j->file.resize(0);
        j->hash.reset();
        j->offset = j->received = 0;
        sendRequest(*j);
        return;
    }
    if (reply->error() != QNetworkReply::NoError || (status != kHttpOk && status != kHttpPartial)) {
        fail(id, int(ErrorCode::NetworkError),
             QStringLiteral("HTTP %1 from %2: %3").arg(status).arg(j->request.url.toString(), reply->errorString()));
        return;
    }
    onReadyRead(id);
    if (!job(id))
        return;  // the last write failed
    // A server that drops the connection can end the reply without an error; a body shorter than its
    // Content-Length is an interruption, and the part stays for a resume.
    const QVariant length = reply->header(QNetworkRequest::ContentLengthHeader);
    if (length.isValid() && j->received < j->offset + length.toLongLong()) {
        fail(id, int(ErrorCode::NetworkError),
             QStringLiteral("%1 closed the connection after %2 of %3 bytes")
                 .arg(j->request.url.toString())
                 .arg(j->received)
                 .arg(j->offset + length.toLongLong()));
        return;
    }
    j->file.close();
    const QString actual = QString::fromLatin1(j->hash.result().toHex());
    const DownloadRequest request = j->request;
    if (!request.sha256.isEmpty() && actual != request.sha256) {
        j->file.remove();  // a corrupt part must not be resumed
        fail(id, int(ErrorCode::ChecksumMismatch),
             QStringLiteral("sha256 of %1 is %2, expected %3").arg(request.url.toString(), actual, request.sha256));
        return;
    }
    QFile::remove(request.destination);
    if (!j->file.rename(request.destination)) {
        fail(id, int(ErrorCode::IoError),
             QStringLiteral("cannot move %1 to %2: %3").arg(j->file.fileName(), request.destination,
                                                           j->file.errorString()));
        return;
    }
    m_jobs.erase(id);
    Q_EMIT finished(id, request.destination, actual, !request.sha256.isEmpty());
}

void Downloader::cancel(const QString& id) {
    Job* j = job(id);
    if (!j)
        return;
    if (j->reply) {
        j->reply->disconnect(this);
        j->reply->abort();
        j->reply->deleteLater();
    }
    m_jobs.erase(id);  // closes the part file, which stays for a later resume
    Q_EMIT cancelled(id);
}

void Downloader::fail(const QString& id, int code, const QString& detail) {
    if (Job* j = job(id); j && j->reply) {
        j->reply->disconnect(this);
        j->reply->abort();
        j->reply->deleteLater();
    }
    m_jobs.erase(id);
    Q_EMIT failed(id, code, detail);
}

}  // namespace app
