/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * textfile — knock-maint textfile: the maintenance metrics of every
 * configured endpoint for the node exporter's textfile collector.
 */

/* Writes DIR/knock_maint.prom (tmp + rename) for every configured endpoint
 * from its meta values and file sizes. */
int maint_write_textfile(const char *dir);
