// Downloads model files with resume and checksum: bytes go to `<destination>.part`; a later start() sends
// `Range: bytes=<part size>-` and appends. The sha256 is computed while the bytes arrive (the existing part is hashed
// first, in chunks on the event loop, so the UI never blocks). When an expected sha256 is given, a mismatch deletes the
// part and fails; otherwise finished() reports the computed hash unverified. GUI thread only.
#pragma once

#include <QCryptographicHash>
#include <QFile>
#include <QObject>
#include <QPointer>
#include <QUrl>

#include <map>
#include <memory>

class QNetworkAccessManager;
class QNetworkReply;

namespace app {

struct DownloadRequest {
    QString id;           // caller's key (the known-model id)
    QUrl url;
    QString destination;  // final path; the part file is destination + ".part"
    QString sha256;       // expected lowercase hex; empty when unknown
};

class Downloader : public QObject {
    Q_OBJECT
public:
    static constexpr qint64 kHashChunkBytes = 4 << 20;  // bytes of an existing part hashed per event-loop turn

    // `network` is borrowed and must outlive the downloader.
    explicit Downloader(QNetworkAccessManager& network, QObject* parent = nullptr);
    ~Downloader() override;

    void start(const DownloadRequest& request);
    // Stops the transfer and keeps the part file, so a later start() resumes.
    void cancel(const QString& id);
    bool isActive(const QString& id) const { return m_jobs.count(id) > 0; }
    static QString partPath(const QString& destination) { return destination + QStringLiteral(".part"); }

Q_SIGNALS:
    void progress(const QString& id, qint64 receivedBytes, qint64 totalBytes);  // totalBytes -1 while unknown
    void finished(const QString& id, const QString& path, const QString& sha256, bool verified);
    // code is a roundchat::ErrorCode value: NetworkError, IoError, DiskFull or ChecksumMismatch.
    void failed(const QString& id, int code, const QString& detail);
    void cancelled(const QString& id);

private:
    struct Job {
        DownloadRequest request;
        QFile file;
        QCryptographicHash hash{QCryptographicHash::Sha256};
        qint64 offset = 0;        // bytes already in the part when the request was sent
        qint64 hashed = 0;        // bytes of the existing part hashed so far
        qint64 received = 0;      // bytes in the part now
        bool restarted = false;   // the server ignored Range once and we started over
        QPointer<QNetworkReply> reply;
    };

    void hashExistingPart(const QString& id);
    void sendRequest(Job& job);
    void onReadyRead(const QString& id);
    void onFinished(const QString& id);
    void fail(const QString& id, int code, const QString& detail);
    Job* job(const QString& id);

    QNetworkAccessManager& m_network;
    std::map<QString, std::unique_ptr<Job>> m_jobs;
};

}  // namespace app
