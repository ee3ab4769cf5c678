"""What several test modules share: data makers, runners and fakes, imported as helpers.<module>
(no test module imports another)."""
