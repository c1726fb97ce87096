/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * MESSAGE_IDs of knock's notable journal records. units/knock.catalog
 * documents each one; tests/unit/test-catalog checks the two agree.
 * Generated once with `systemd-id128 new`; never change a published id.
 */

#define MSGID_PREVIOUS_RUN_UNCLEAN "372ae111199c4ecf89ce347293e5daf8"
#define MSGID_STORAGE_ERROR        "6a6c376e8c2d4925a761f1ac53ab7366"
#define MSGID_DELIVERY_INVALID     "bd97c6782682488e81905c41ba637d6a"
#define MSGID_EVENT_DEAD           "de202634b3544cebab56e6c95ab72426"
#define MSGID_EVENT_FAILED         "65de606f201d41309c04261062e514b2"
#define MSGID_HOOK_FAILED          "a06c50cafbf14e209e9e85c790d83374"
#define MSGID_BACKUP_DONE          "fef6cf5b65b74a5db009682a4e97c291"
#define MSGID_BACKUP_FAILED        "65f191adb4c7420b9dca037a58c163e6"
#define MSGID_PRUNE_DONE           "0a32beaeb8eb41be9315e7ea205ec911"
#define MSGID_CONFIG_RELOAD_FAILED "44f13e35a85540928cae0276b3905c7b"
#define MSGID_DAEMON_STARTED       "b5dee90081d14eaab10e7acf54bff899"
#define MSGID_DAEMON_STOPPED       "94b06a79d9b948a7ae5a0bfdcdd0a544"
#define MSGID_BREAKER_OPENED       "f14985627b7b48eea50dc9eb9bac4046"
#define MSGID_BREAKER_CLOSED       "6cfdd2e2b0eb443d9b9ae4484dac566c"
