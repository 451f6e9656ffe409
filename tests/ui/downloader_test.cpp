// app::Downloader against a small HTTP/1.1 server inside the test (QTcpServer): full download, interruption and
// resume with Range, a server that ignores Range, a bad checksum, HTTP errors and cancel.
#include "downloader.h"

#include "roundchat/result.h"

#include <QCryptographicHash>
#include <QFile>
#include <QNetworkAccessManager>
#include <QRandomGenerator>
#include <QSignalSpy>
#include <QTcpServer>
#include <QTcpSocket>
#include <QTemporaryDir>
#include <QTest>
#include <QTimer>

using app::DownloadRequest;
using app::Downloader;
using roundchat::ErrorCode;

namespace {

// Serves one body at any path. Modes let a test break the transfer in the ways real servers do.
class HttpServer : public QObject {
public:
    enum class Mode { Normal, DropAfter, IgnoreRange, Slow, NotFound };

    explicit HttpServer(QByteArray body) : m_body(std::move(body)) {
        QObject::connect(&m_server, &QTcpServer::newConnection, this, [this] {
            while (QTcpSocket* s = m_server.nextPendingConnection())
                serve(s);
        });
        QVERIFY(m_server.listen(QHostAddress::LocalHost));
    }

    QUrl url() const { return QUrl(QStringLiteral("http://127.0.0.1:%1/model.gguf").arg(m_server.serverPort())); }
    void setMode(Mode mode, qint64 dropAfter = 0) {
        m_mode = mode;
        m_dropAfter = dropAfter;
    }
    const QList<QByteArray>& rangeHeaders() const { return m_ranges; }

private:
    void serve(QTcpSocket* socket) {
        socket->setParent(this);
        auto buffer = std::make_shared<QByteArray>();
        QObject::connect(socket, &QTcpSocket::readyRead, this, [this, socket, buffer] {
            *buffer += socket->readAll();
            if (!buffer->contains("\r\n\r\n"))
                return;
            respond(socket, *buffer);
            buffer->clear();
        });
    }

    void respond(QTcpSocket* socket, const QByteArray& request) {
        qint64 from = 0;
        QByteArray range;
        for (const QByteArray& line : request.split('\n')) {
            if (line.toLower().startsWith("range:")) {
                range = line.mid(6).trimmed();
                from = range.mid(range.indexOf('=') + 1).split('-').first().toLongLong();
            }
        }
        m_ranges.append(range);
        if (m_mode == Mode::NotFound) {
            socket->write("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found");
            socket->disconnectFromHost();
            return;
        }
        const bool partial = !range.isEmpty() && m_mode != Mode::IgnoreRange;
        if (!partial)
            from = 0;
        const QByteArray body = m_body.mid(from);
        QByteArray head = partial ? "HTTP/1.1 206 Partial Content\r\n" : "HTTP/1.1 200 OK\r\n";
        if (partial)
            head += "Content-Range: bytes " + QByteArray::number(from) + '-' + QByteArray::number(m_body.size() - 1) +
                    '/' + QByteArray::number(m_body.size()) + "\r\n";
        head += "Content-Type: application/octet-stream\r\nContent-Length: " + QByteArray::number(body.size()) +
                "\r\nConnection: close\r\n\r\n";
        socket->write(head);
        if (m_mode == Mode::DropAfter) {
            socket->write(body.left(m_dropAfter));
            m_mode = Mode::Normal;  // the next attempt succeeds
            QObject::connect(socket, &QTcpSocket::bytesWritten, socket, [socket] {
                if (socket->bytesToWrite() == 0)
                    socket->abort();
            });
            return;
        }
        if (m_mode == Mode::Slow) {
            // 4 KiB every 5 ms: long enough for a test to cancel mid-transfer.
            auto* timer = new QTimer(socket);
            auto sent = std::make_shared<qint64>(0);
            QObject::connect(timer, &QTimer::timeout, socket, [socket, timer, sent, body] {
                if (socket->state() != QAbstractSocket::ConnectedState) {
                    timer->stop();
                    return;
                }
                socket->write(body.mid(*sent, 4096));
                *sent += 4096;
                if (*sent >= body.size()) {
                    timer->stop();
                    socket->disconnectFromHost();
                }
            });
            timer->start(5);
            return;
        }
        socket->write(body);
        socket->disconnectFromHost();
    }

    QTcpServer m_server;
    QByteArray m_body;
    Mode m_mode = Mode::Normal;
    qint64 m_dropAfter = 0;
    QList<QByteArray> m_ranges;
};

QByteArray randomBody(int bytes) {
    QByteArray b(bytes, Qt::Uninitialized);
    QRandomGenerator gen(42);
    for (char& c : b)
        c = char(gen.bounded(256));
    return b;
}

QString sha256Hex(const QByteArray& data) {
    return QString::fromLatin1(QCryptographicHash::hash(data, QCryptographicHash::Sha256).toHex());
}

QByteArray readAll(const QString& path) {
    QFile f(path);
    return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}

}  // namespace

class DownloaderTest : public QObject {
    Q_OBJECT
private Q_SLOTS:
    void init() {
        m_body = randomBody(300 * 1000);
        m_server = std::make_unique<HttpServer>(m_body);
        m_dir = std::make_unique<QTemporaryDir>();
        QVERIFY(m_dir->isValid());
        m_downloader = std::make_unique<Downloader>(m_network);
        m_dest = m_dir->filePath(QStringLiteral("models/model.gguf"));
    }
    void cleanup() {
        m_downloader.reset();
        m_server.reset();
    }

    void fullDownloadVerifiesChecksum() {
        QSignalSpy done(m_downloader.get(), &Downloader::finished);
        QSignalSpy progress(m_downloader.get(), &Downloader::progress);
        m_downloader->start(request(sha256Hex(m_body)));
        QVERIFY(done.wait(10000));
        QCOMPARE(done.first().at(1).toString(), m_dest);
        QCOMPARE(done.first().at(2).toString(), sha256Hex(m_body));
        QVERIFY(done.first().at(3).toBool());  // verified against the expected hash
        QCOMPARE(readAll(m_dest), m_body);
        QVERIFY(!QFile::exists(Downloader::partPath(m_dest)));
        QVERIFY(!progress.isEmpty());
        QCOMPARE(progress.last().at(1).toLongLong(), qint64(m_body.size()));
        QCOMPARE(progress.last().at(2).toLongLong(), qint64(m_body.size()));
        QVERIFY(m_server->rangeHeaders().first().isEmpty());
    }

    void unknownChecksumIsReportedNotVerified() {
        QSignalSpy done(m_downloader.get(), &Downloader::finished);
        m_downloader->start(request({}));
        QVERIFY(done.wait(10000));
        QCOMPARE(done.first().at(2).toString(), sha256Hex(m_body));
        QVERIFY(!done.first().at(3).toBool());
    }

    void interruptedDownloadResumesWithRange() {
        constexpr int kFirstPart = 100 * 1000;
        m_server->setMode(HttpServer::Mode::DropAfter, kFirstPart);
        QSignalSpy failed(m_downloader.get(), &Downloader::failed);
        m_downloader->start(request(sha256Hex(m_body)));
        QVERIFY(failed.wait(10000));
        QCOMPARE(failed.first().at(1).toInt(), int(ErrorCode::NetworkError));
        const qint64 partSize = QFileInfo(Downloader::partPath(m_dest)).size();
        QVERIFY2(partSize > 0 && partSize <= kFirstPart, qPrintable(QString::number(partSize)));
        QVERIFY(!QFile::exists(m_dest));

        QSignalSpy done(m_downloader.get(), &Downloader::finished);
        m_downloader->start(request(sha256Hex(m_body)));
        QVERIFY(done.wait(10000));
        QCOMPARE(m_server->rangeHeaders().last(), QByteArray("bytes=") + QByteArray::number(partSize) + '-');
        QVERIFY(done.first().at(3).toBool());
        QCOMPARE(readAll(m_dest), m_body);
    }

    void serverIgnoringRangeStartsOver() {
        QDir().mkpath(QFileInfo(m_dest).absolutePath());
        QFile part(Downloader::partPath(m_dest));
        QVERIFY(part.open(QIODevice::WriteOnly));
        part.write(QByteArray(5000, 'x'));  // not even the right bytes: the full response must replace them
        part.close();
        m_server->setMode(HttpServer::Mode::IgnoreRange);
        QSignalSpy done(m_downloader.get(), &Downloader::finished);
        m_downloader->start(request(sha256Hex(m_body)));
        QVERIFY(done.wait(10000));
        QCOMPARE(m_server->rangeHeaders().last(), QByteArray("bytes=5000-"));
        QCOMPARE(readAll(m_dest), m_body);
    }

    void badChecksumIsRejectedAndDeleted() {
        QSignalSpy failed(m_downloader.get(), &Downloader::failed);
        QSignalSpy done(m_downloader.get(), &Downloader::finished);
        m_downloader->start(request(QString(64, QLatin1Char('0'))));
        QVERIFY(failed.wait(10000));
        QCOMPARE(failed.first().at(1).toInt(), int(ErrorCode::ChecksumMismatch));
        QVERIFY(failed.first().at(2).toString().contains(sha256Hex(m_body)));
        QVERIFY(done.isEmpty());
        QVERIFY(!QFile::exists(m_dest));
        QVERIFY(!QFile::exists(Downloader::partPath(m_dest)));
        QVERIFY(!m_downloader->isActive(QStringLiteral("m")));
    }

    void httpErrorFails() {
        m_server->setMode(HttpServer::Mode::NotFound);
        QSignalSpy failed(m_downloader.get(), &Downloader::failed);
        m_downloader->start(request({}));
        QVERIFY(failed.wait(10000));
        QCOMPARE(failed.first().at(1).toInt(), int(ErrorCode::NetworkError));
        QVERIFY(failed.first().at(2).toString().contains(QStringLiteral("404")));
        QVERIFY(!QFile::exists(m_dest));
    }

    void cancelKeepsPartForResume() {
        m_server->setMode(HttpServer::Mode::Slow);
        QSignalSpy progress(m_downloader.get(), &Downloader::progress);
        QSignalSpy cancelled(m_downloader.get(), &Downloader::cancelled);
        QSignalSpy done(m_downloader.get(), &Downloader::finished);
        m_downloader->start(request(sha256Hex(m_body)));
        QTRY_VERIFY_WITH_TIMEOUT(!progress.isEmpty() && progress.last().at(1).toLongLong() > 0, 10000);
        m_downloader->cancel(QStringLiteral("m"));
        QCOMPARE(cancelled.size(), 1);
        QVERIFY(!m_downloader->isActive(QStringLiteral("m")));
        QTest::qWait(50);  // no late signal after cancel
        QVERIFY(done.isEmpty());
        const qint64 partSize = QFileInfo(Downloader::partPath(m_dest)).size();
        QVERIFY(partSize > 0 && partSize < m_body.size());

        m_server->setMode(HttpServer::Mode::Normal);
        m_downloader->start(request(sha256Hex(m_body)));
        QVERIFY(done.wait(10000));
        QCOMPARE(m_server->rangeHeaders().last(), QByteArray("bytes=") + QByteArray::number(partSize) + '-');
        QCOMPARE(readAll(m_dest), m_body);
    }

private:
    DownloadRequest request(const QString& sha) const {
        return DownloadRequest{QStringLiteral("m"), m_server->url(), m_dest, sha};
    }

    QNetworkAccessManager m_network;
    QByteArray m_body;
    std::unique_ptr<HttpServer> m_server;
    std::unique_ptr<QTemporaryDir> m_dir;
    std::unique_ptr<Downloader> m_downloader;
    QString m_dest;
};

QTEST_GUILESS_MAIN(DownloaderTest)
#include "downloader_test.moc"
