// An app's own preload (from its NODE_OPTIONS): pmi's must not displace it.
globalThis.appPreloadRan = true;
