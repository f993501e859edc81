import Foundation
import GatepostCatalog
#if canImport(Glibc)
import Glibc
#endif

/// Which application a received transfer goes to: the site's routes in order, first match wins,
/// then the site's `application`. Pure, so every rule has a unit test.
public enum Router {
    public static func application(for record: TransferRecord, site: RemoteSite) -> String? {
        // Reports update outbound transfers; probes only prove the path; duplicates were
        // delivered the first time.
        guard record.direction == .inbound, record.type != .eerp, record.type != .probe,
              record.fileName != TransferRecord.duplicateFileName else { return nil }
        if let route = site.routes.first(where: { matches($0, record) }) {
            return route.application
        }
        // A message kept whole is not what an application expects: only an explicit route
        // (e.g. `file_name: RECOVER`) sends it anywhere.
        if record.fileName == TransferRecord.recoverFileName { return nil }
        return site.application
    }

    static func matches(_ route: RemoteSite.Route, _ record: TransferRecord) -> Bool {
        if let type = route.type, type != record.type { return false }
        if let pattern = route.fileName, !RoutePatterns.glob(pattern, record.fileName ?? "") { return false }
        if let pattern = route.sender, !RoutePatterns.glob(pattern, senderAddress(record.sender ?? "")) { return false }
        if let pattern = route.subject, !RoutePatterns.subject(pattern, record.subject ?? "") { return false }
        return true
    }

    /// `ACME Orders <orders@acme.example>` -> `orders@acme.example`.
    static func senderAddress(_ sender: String) -> String {
        if let open = sender.lastIndex(of: "<"), let close = sender.lastIndex(of: ">"), open < close {
            return String(sender[sender.index(after: open)..<close])
        }
        return sender.trimmingCharacters(in: .whitespaces)
    }
}
