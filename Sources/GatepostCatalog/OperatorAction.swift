import Foundation

/// One thing an operator did: disable a site, ask for a poll, retry a transfer, send a file.
/// Kept for the audit trail, shown on the site's and the transfer's pages.
public struct OperatorAction: Codable, Sendable, Hashable {
    /// Assigned by the store; 0 until recorded.
    public var id: Int64
    public var at: Date
    /// Who: a console user (`alice`), an API token (`token:ci`), or the command line
    /// (`cli:root`).
    public var actor: String
    /// What, as a dotted verb: `site.disable`, `site.enable`, `site.poll`, `transfer.retry`,
    /// `transfer.redeliver`, `outbound.send`.
    public var action: String
    public var site: String?
    public var transferId: String?
    /// Anything the action needs to be understood later (the application redelivered to, the
    /// outcome).
    public var detail: String?

    public init(id: Int64 = 0, at: Date = Date(), actor: String, action: String, site: String? = nil, transferId: String? = nil, detail: String? = nil) {
        self.id = id
        self.at = at
        self.actor = actor
        self.action = action
        self.site = site
        self.transferId = transferId
        self.detail = detail
    }

    /// Whether it concerns `site` or `transferId` (both nil: everything).
    func concerns(site: String?, transferId: String?) -> Bool {
        if let site, self.site != site { return false }
        if let transferId, self.transferId != transferId { return false }
        return true
    }
}
