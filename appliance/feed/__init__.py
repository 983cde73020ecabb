"""Feed handler: MoldUDP64 receiver with gap recovery, ITCH order books, book updates into the strategy ring."""
