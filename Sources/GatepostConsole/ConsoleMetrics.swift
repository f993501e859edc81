import Foundation
import GatepostCatalog
import GatepostCore
import Metrics
import Prometheus
import Synchronization

/// `/metrics` in Prometheus' text format: the engine's counters (polls, messages, bytes, poll
/// durations, errors by cause, deliveries; recorded through swift-metrics as they happen) and
/// gauges read from the catalog at each scrape (sites up, enabled, stuck; the outbox; the oldest
/// unacknowledged outbound transfer).
public enum ConsoleMetrics {
    private static let bootstrapped = Mutex(false)

    /// Sends the engine's swift-metrics to the registry `/metrics` exports. Once per process
    /// (later calls do nothing).
    public static func bootstrap() {
        bootstrapped.withLock { done in
            guard !done else { return }
            done = true
            MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        }
    }

    static var registry: PrometheusCollectorRegistry { PrometheusMetricsFactory.defaultRegistry }

    static func scrape(_ environment: ConsoleEnvironment) async throws -> String {
        let catalog = environment.catalog
        let directory = await environment.sites()
        let states = try await catalog.siteStates()
        for site in directory.sites {
            let status = SiteStatus(site: site, state: states[site.name])
            let labels = [("site", site.name)]
            registry.makeGauge(name: "gatepost_site_enabled", labels: labels).set(Double(status.enabled ? 1 : 0))
            registry.makeGauge(name: "gatepost_site_up", labels: labels).set(Double(status.lastPoll != nil && status.lastError == nil ? 1 : 0))
            registry.makeGauge(name: "gatepost_site_stuck_messages", labels: labels).set(Double(status.stuck))
            if let success = status.lastSuccess {
                registry.makeGauge(name: "gatepost_site_last_success_timestamp_seconds", labels: labels).set(success.timeIntervalSince1970)
            }
        }
        let pending = try await catalog.dueOutbox(site: nil, at: .distantFuture)
        registry.makeGauge(name: "gatepost_outbox_pending").set(Double(pending.count))
        registry.makeGauge(name: "gatepost_outbox_oldest_seconds").set(pending.map { Date().timeIntervalSince($0.createdAt) }.max() ?? 0)
        var oldest: Date?
        for state in [TransferRecord.State.sent, .delivered, .overdue] {
            let first = try await catalog.transfers(TransferFilter(state: state, limit: 1, direction: .outbound)).first
            if let received = first?.receivedAt { oldest = min(oldest ?? received, received) }
        }
        registry.makeGauge(name: "gatepost_oldest_unacknowledged_seconds").set(oldest.map { Date().timeIntervalSince($0) } ?? 0)
        // Every kind, 0 included: a rule on a series that disappears when it clears is a rule
        // that never fires again.
        let open = try await catalog.alerts(openOnly: true, limit: Int.max)
        for kind in AlertKind.allCases {
            registry.makeGauge(name: "gatepost_alerts_open", labels: [("kind", kind.rawValue)])
                .set(Double(open.filter { $0.kind == kind.rawValue }.count))
        }
        return registry.emitToString()
    }
}
