import Foundation
import GatepostCatalog
import Metrics

/// What the engine counts, through swift-metrics (the console's `/metrics` exports it in
/// Prometheus' format; without a metrics backend these are no-ops). Names and labels are part
/// of the operators' contract (README, "Metrics").
enum EngineMetrics {
    /// One site's poll: its outcome, duration, and what it received.
    static func poll(site: String, result: Result<PollSummary, SitePollError>) {
        let summary: PollSummary
        switch result {
        case .success(let done):
            summary = done
            Counter(label: "gatepost_polls_total", dimensions: [("site", site), ("result", "ok")]).increment()
        case .failure(let error):
            summary = error.partial
            Counter(label: "gatepost_polls_total", dimensions: [("site", site), ("result", "failed")]).increment()
            Counter(label: "gatepost_poll_errors_total", dimensions: [("site", site), ("cause", error.category.rawValue)]).increment()
        }
        Timer(label: "gatepost_poll_duration_seconds", dimensions: [("site", site)], preferredDisplayUnit: .seconds)
            .recordNanoseconds(Int64(summary.duration.timeInterval * 1_000_000_000))
        var byType: [String: Int] = [:]
        for record in summary.records {
            // RECOVER and DUPLICATE (messages kept whole) are counted apart from the XFERs.
            let type = record.fileName.flatMap { TransferRecord.keptWholeFileNames.contains($0) ? $0 : nil } ?? record.type.rawValue
            byType[type, default: 0] += 1
        }
        for (type, count) in byType {
            Counter(label: "gatepost_messages_total", dimensions: [("site", site), ("type", type)]).increment(by: count)
        }
        if summary.bytes > 0 {
            Counter(label: "gatepost_received_bytes_total", dimensions: [("site", site)]).increment(by: Int(summary.bytes))
        }
    }

    /// One delivery attempt's outcome: `delivered`, `retrying` or `failed`.
    static func delivery(application: String, result: String) {
        Counter(label: "gatepost_deliveries_total", dimensions: [("application", application), ("result", result)]).increment()
    }
}

