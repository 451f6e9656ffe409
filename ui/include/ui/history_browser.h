// Every conversation at a glance: full-text search with snippets (Enter or double-click opens the hit), and a table
// of conversations with their KV storage size, a Free button, and export/import. GUI thread only.
#pragma once

#include <QWidget>

#include "ui/types.h"

class QLabel;
class QLineEdit;
class QListWidget;
class QPushButton;
class QTableWidget;
class QTimer;

namespace ui {

class HistoryBrowser : public QWidget {
    Q_OBJECT
public:
    enum class ExportFormat { Markdown, Json };
    static constexpr int kSearchDelayMs = 200;  // debounce while typing

    explicit HistoryBrowser(QWidget* parent = nullptr);

    QLineEdit* searchBox() const { return m_search; }
    QListWidget* results() const { return m_results; }
    QTableWidget* table() const { return m_table; }

    void setResults(const QString& query, const QList<SearchHit>& hits);
    void setConversations(const QList<ConversationInfo>& conversations);
    // The cap on stored KV (0: none), shown next to the total.
    void setKvCap(quint64 capBytes);
    qint64 selectedConversation() const;

    // Snippet with kSnippetOpen/kSnippetClose markers -> escaped HTML with the matches in bold.
    static QString snippetHtml(const QString& snippet);

Q_SIGNALS:
    void searchRequested(const QString& query);
    void hitActivated(qint64 conversationId, qint64 messageId);
    void freeKvRequested(qint64 conversationId);
    void exportRequested(qint64 conversationId, ui::HistoryBrowser::ExportFormat format);
    void importRequested();

private:
    void activateHit(int row);
    void updateTotals();

    QLineEdit* m_search;
    QTimer* m_debounce;
    QLabel* m_resultInfo;
    QListWidget* m_results;
    QTableWidget* m_table;
    QLabel* m_totals;
    int m_conversationCount = 0;
    quint64 m_totalKv = 0;
    quint64 m_kvCap = 0;
    QPushButton* m_exportMd;
    QPushButton* m_exportJson;
    QPushButton* m_import;
};

}  // namespace ui
