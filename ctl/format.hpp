// Human (tables, key-value lines) and JSON renderings of the control plane's replies.
#pragma once

#include <cstdint>
#include <string>

#include <google/protobuf/message.h>
#include <google/protobuf/repeated_field.h>

#include "extmem/v1/control.pb.h"

namespace extmem::ctl {

using ClientList = google::protobuf::RepeatedPtrField<v1::ClientStats>;

std::string size_text(uint64_t bytes);  // "512.0 MiB"
// What `list` shows as LIMIT: "effective/limit" when they differ, "none" for no limit.
std::string limit_text(const v1::ClientStats& client);
std::string duration_text(double seconds);  // "42s", "5m 03s", "2h 05m", "3d 04h"
std::string user_name(uint32_t uid);        // the passwd name, else the number

// `list`: PID USER EXE POLICY LIMIT RESIDENT SWAPPED MAJ/s EVICT/s, in the given order.
std::string client_table(const ClientList& clients);
// `show`: every field of one client.
std::string client_detail(const v1::ClientStats& client);
// `status`; health is the health service's answer ("SERVING", or why there is none).
std::string status_text(const v1::GetStatusResponse& status, const std::string& health,
                        const std::string& control);
// `check`: one line per capability (name, yes / no / no (optional), detail).
std::string capabilities_text(const v1::GetStatusResponse& status);
bool all_required_present(const v1::GetStatusResponse& status);
// One `top` screen: a header with the totals, then the clients by resident, largest first.
std::string snapshot_text(const v1::StatsSnapshot& snapshot);
// `set-limit` and `set-policy`: one line per changed client.
std::string limits_changed_text(const ClientList& clients);
std::string policies_changed_text(const ClientList& clients);

// One line of JSON, field names as in control.proto, zero values included.
std::string to_json(const google::protobuf::Message& message);
// `status --json`: the GetStatusResponse with a "health" field added; health is a token
// ("SERVING", "NOT_SERVING", "UNKNOWN"), never escaped.
std::string status_json(const v1::GetStatusResponse& status, const std::string& health);
// `check --json`: {"capabilities": [...], "all_required_present": bool}.
std::string capabilities_json(const v1::GetStatusResponse& status);

}  // namespace extmem::ctl
