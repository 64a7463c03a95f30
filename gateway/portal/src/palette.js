// Colours for issue classes and statuses: distinguishable, each with enough contrast on white.
export const PALETTE = ['#c62828', '#1565c0', '#2e7d32', '#ef6c00', '#6a1b9a', '#00838f', '#ad1457', '#4e342e', '#37474f', '#9e9d24', '#5d4037', '#283593']
